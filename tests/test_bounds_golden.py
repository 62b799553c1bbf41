"""Our IBP and CROWN bounds equal auto_LiRPA's (saved by scripts/make_bounds_golden.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bound_samplers import small_net
from robustlab.certify import bounds, margin_spec
from robustlab.threats import LpBall

GOLDEN = Path(__file__).parent / "fixtures" / "bounds_golden.npz"


@pytest.mark.parametrize("kind", ["mlp", "cnn", "residual"])
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_bounds_equal_auto_lirpa(kind, method):
    with np.load(GOLDEN, allow_pickle=False) as z:
        ref = {k: torch.from_numpy(z[k]) for k in z.files}
    net = small_net(kind, 0)
    net.load_state_dict({k.split("/", 1)[1]: v for k, v in ref.items() if k.startswith(f"{kind}/")
                         and not k.endswith(("_lower", "_upper"))})
    x, y = ref["x"], ref["y"].long()
    lo, hi = bounds(net.eval(), x, LpBall("linf", float(ref["eps"])), method, margin_spec(y, 5))
    torch.testing.assert_close(lo, ref[f"{kind}/{method}_lower"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hi, ref[f"{kind}/{method}_upper"], rtol=1e-5, atol=1e-5)
