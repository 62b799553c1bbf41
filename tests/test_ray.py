"""Scale-out on a local Ray instance (2 CPUs): the same per-sample outcomes as one process, one
store, resumable across the two ways of running."""
from __future__ import annotations

import pytest
import torch

import robustlab as rl
from robustlab.cli import main

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'robustlab[ray]')")

from robustlab.evaluation.distributed import evaluate_distributed  # noqa: E402

THREAT = rl.LpBall("linf", 0.1)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup():
    x, y = rl.data.load("mnist", split="test", n=120)
    return rl.models.load("mnist-cnn"), x, y, [rl.attacks.FGSM(THREAT), rl.attacks.PGD(THREAT, steps=5)]


def _same(a, b) -> None:
    assert torch.equal(a.clean_correct, b.clean_correct)
    assert torch.equal(a.robust, b.robust)
    assert torch.equal(a.broken_by, b.broken_by)
    assert torch.allclose(a.distance, b.distance, equal_nan=True)
    assert a.robust_accuracy == b.robust_accuracy


@pytest.mark.slow
def test_sharded_equals_one_process_and_resumes(local_ray, setup, tmp_path):
    model, x, y, attacks = setup
    one = rl.evaluate(model, x, y, THREAT, attacks, batch_size=30, diagnostics=False)
    assert 0 < one.robust_accuracy < one.clean_accuracy  # some points break, some do not

    db = tmp_path / "runs.db"
    sharded = evaluate_distributed(model, x, y, THREAT, attacks, store=db, workers=2, batch_size=30,
                                   diagnostics=False)
    _same(one, sharded)
    assert sharded.resumed_points == 0
    with rl.Store(db) as s:
        assert s.done_batches(sharded.run_id) == {0: 30, 30: 30, 60: 30, 90: 30}
        assert s.run(sharded.run_id).status == "done"
    # The one-process runner sees the same run and finds every batch stored.
    again = rl.evaluate(model, x, y, THREAT, attacks, batch_size=30, store=db, diagnostics=False)
    assert again.run_id == sharded.run_id and again.resumed_points == 120
    _same(one, again)

    # Interrupted after two batches in one process, finished on Ray: only the rest is computed.
    db2 = tmp_path / "partial.db"

    def stop_after_two(done: int, total: int) -> None:
        if done >= 60:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rl.evaluate(model, x, y, THREAT, attacks, batch_size=30, store=db2, progress=stop_after_two,
                    diagnostics=False)
    resumed = evaluate_distributed(model, x, y, THREAT, attacks, store=db2, workers=2, batch_size=30,
                                   diagnostics=False)
    assert resumed.resumed_points == 60
    _same(one, resumed)


@pytest.mark.slow
def test_cli_workers(local_ray, tmp_path, capsys):
    db = tmp_path / "runs.db"
    args = ["evaluate", "--model", "mnist-cnn", "--n", "60", "--threat", "linf:0.1", "--attacks", "fgsm,pgd-5",
            "--batch-size", "20", "--no-diagnostics", "--store", str(db)]
    assert main([*args, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert main(args) == 0  # the same run, in one process: entirely resumed
    out2 = capsys.readouterr().out
    assert "resumed: 60 points" in " ".join(out2.split())
    assert out.split("robust accuracy")[-1] == out2.split("robust accuracy")[-1]
    assert main(["evaluate", "--model", "mnist-cnn", "--n", "20", "--workers", "2"]) == 2
    assert "--workers/--ray need --store" in capsys.readouterr().err


@pytest.mark.slow
def test_sharded_bf16_equals_one_process_bf16(local_ray, setup, tmp_path):
    model, x, y, attacks = setup
    one = rl.evaluate(model, x[:60], y[:60], THREAT, attacks, batch_size=30, diagnostics=False, precision="bf16")
    sharded = evaluate_distributed(model, x[:60], y[:60], THREAT, attacks, store=tmp_path / "r.db", workers=2,
                                   batch_size=30, diagnostics=False, precision="bf16")
    _same(one, sharded)
    assert sharded.config["precision"] == "bf16"
