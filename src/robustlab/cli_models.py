"""How the command line gets its model: a shipped name, a builder file with weights, or an HTTP
endpoint, at the access level asked for; each failure is one line naming the option and exit 2
(``cli_tables.fail``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from robustlab.cli_tables import fail


def check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        fail(f"device: expected cpu, cuda or cuda:N, got {device!r}")
        return
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"device: {device} asked for, but this torch ({torch.__version__}) has no usable CUDA device; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        fail(f"device: {device} does not exist (this machine has {torch.cuda.device_count()} CUDA device(s))")


def load_model(spec: str, weights: Optional[Path], device: str, untrained: bool = False):
    import robustlab as rl

    check_device(device)
    if spec.endswith(".py"):
        if weights is None and not untrained:
            fail(f"weights: {spec} builds an untrained model; pass --weights FILE.safetensors "
                 "(or --untrained to evaluate random weights on purpose)")
        return rl.models.load_from_file(spec, weights, device=device)
    if weights is not None:
        fail("weights: --weights goes with a builder file (--model path/to/model.py), not a shipped model name")
    return rl.models.load(spec, device=device)


def input_shape(model: str) -> tuple[int, ...] | None:
    """The shape of one input of a shipped model (from its dataset), so a served endpoint can
    answer a wrongly shaped request with 400 naming the shape; None when unknown."""
    import robustlab as rl
    from robustlab.models.zoo import ZOO

    entry = ZOO.get(model)
    if entry is None:
        return None
    try:
        shape = rl.data.info(entry.dataset).shape
    except (ValueError, AttributeError, ImportError):
        return None
    return tuple(shape) if shape else None


def probe_endpoint(net, x1) -> None:
    """Ask an HTTP endpoint about one input before the run (one query from its budget), so an
    endpoint that fails, hangs or answers out-of-range labels is one line and exit 2."""
    from robustlab.models.http import HTTPError

    try:
        net.predict_labels(x1) if net.access == "label" else net(x1)
    except HTTPError as e:
        fail(f"model: {e}")
    except ValueError as e:
        fail(str(e))


def n_classes_of_data(data: str, y) -> int | None:
    """The number of classes of a shipped dataset (an endpoint answering a label outside them is
    refused); None for the user's own data, whose labels may cover only some of the model's."""
    import robustlab as rl

    try:
        k = getattr(rl.data.info(data), "n_classes", None)
    except (ValueError, KeyError, AttributeError, ImportError):
        return None
    return int(k) if k else None


def load_access_model(spec: str, weights: Optional[Path], device: str, access: str, x1, untrained: bool = False,
                       http: Optional[dict] = None):
    """The model at the access level asked for: an HTTP endpoint (``http``: timeout, retries,
    n_classes), or a local model (restricted to score-only or label-only access unless
    ``access`` is "white")."""
    import robustlab as rl
    from robustlab.validation import probe_model

    if access not in ("white", "score", "label"):
        fail(f"access: expected white, score or label, got {access!r}")
    if spec.startswith(("http://", "https://")):
        if access == "white":
            fail("access: an HTTP model gives no gradients; use --access score or --access label")
        if weights is not None:
            fail("weights: --weights goes with a builder file, not an HTTP model")
        return rl.models.HTTPModel(spec, access=access, **(http or {}))
    net = load_model(spec, weights, device, untrained)
    if access == "white":
        return net
    return rl.models.as_access(net, access, n_classes=probe_model(net, x1))


__all__ = ["check_device", "load_model", "input_shape", "probe_endpoint", "n_classes_of_data", "load_access_model"]
