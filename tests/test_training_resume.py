"""Kill -9 a real training process mid-run, rerun the same command, and get the weights of an
uninterrupted run bit for bit (digits MLP, PGD-AT with random starts, so the data order, the
optimiser state and the attack's random numbers must all be restored exactly)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _cmd(out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "robustlab.train", "--recipe", "pgdat", "--data", "digits",
            "--arch", "digits-mlp", "--threat", "linf:0.1", "--epochs", "5", "--batch-size", "20",
            "--steps", "3", "--held-out", "100", "--checkpoint-every", "7", "--lr", "3e-3",
            "--out", str(out)] + (["--resume"] if resume else [])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run(out: Path, resume: bool) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(out, resume), env=_env(), capture_output=True, text=True, timeout=300)


def _kill_after_checkpoint(out: Path, delay: float) -> int:
    """Start a run, wait for its first checkpoint (or a newer one), wait ``delay`` s, SIGKILL it."""
    ckpt = out.with_name(out.name + ".ckpt")
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    proc = subprocess.Popen(_cmd(out, resume=True), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != before:
            break
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


@pytest.mark.slow
def test_kill_9_then_rerun_gives_bit_identical_weights(tmp_path: Path) -> None:
    ref = tmp_path / "ref" / "m.safetensors"
    done = _run(ref, resume=False)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed" / "m.safetensors"
    out.parent.mkdir()
    rc1 = _kill_after_checkpoint(out, 0.0)
    rc2 = _kill_after_checkpoint(out, 0.05)
    state = torch.load(out.with_name(out.name + ".ckpt"), weights_only=True)
    assert not out.exists(), "the run finished before the kill: the test did not interrupt it"
    assert rc1 == rc2 == -signal.SIGKILL
    assert (state["epoch"], state["step"]) < (5, 0)
    resumed = _run(out, resume=True)
    assert resumed.returncode == 0, resumed.stderr

    a, b = load_file(str(ref)), load_file(str(out))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the run really trained: the weights moved far from a fresh initialisation
    torch.manual_seed(0)
    from robustlab.models.architectures import digits_mlp

    fresh = digits_mlp().state_dict()
    assert max(float((a[k] - fresh[k]).abs().max()) for k in a) > 0.05
