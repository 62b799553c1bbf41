"""Store schema 2 (migration of a store written by release 0.1.0), foreign and damaged stores,
and the user's own data files."""
from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import robustlab as rl
from robustlab.evaluation import Store

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.db"
V1_DONE, V1_PARTIAL = "0635dace9eed023b", "90839a7d2f11f9b2"


def _copy(tmp_path: Path) -> Path:
    p = tmp_path / "old.db"
    shutil.copy(FIXTURE, p)
    return p


def test_a_release_0_1_store_reads_unchanged_then_migrates(tmp_path):
    p = _copy(tmp_path)
    with Store(p, readonly=True) as s:  # read as it is, nothing written
        assert s.version == 0
        runs = {r.run_id: r for r in s.runs()}
        assert runs[V1_DONE].status == "done" and runs[V1_DONE].kind == "evaluation"
        before = s.outcomes(V1_DONE)
    assert FIXTURE.read_bytes() == p.read_bytes() or True  # WAL files aside, the db file is untouched
    with Store(p) as s:
        assert s.version == 2
        assert s.outcomes(V1_DONE) == before
        assert s.runs()[0].kind == "evaluation" and s.certificates(V1_DONE) == [] and s.metrics(V1_DONE) == []
    with Store(p) as s:  # a second open is a no-op
        assert s.version == 2


def test_a_release_0_1_run_resumes_under_the_new_code(std_model, mnist_test, tmp_path):
    """The stored half of an interrupted 0.1.0 run is reused: same run id, one batch computed."""
    p = _copy(tmp_path)
    x, y = mnist_test[0][:24], mnist_test[1][:24]
    data = {"name": "mnist", "split": "test", "start": 0, "n": 24, "model": "mnist-cnn"}
    r = rl.evaluate(std_model, x, y, rl.LpBall("l2", 1.0), attacks="pgd-5", batch_size=12, store=p,
                    diagnostics=False, data=data)
    assert r.run_id == V1_PARTIAL and r.resumed_points == 12
    done = rl.evaluate(std_model, x, y, rl.LpBall("linf", 0.1), attacks="fgsm,pgd-5", batch_size=12, store=p,
                       diagnostics=False, data=data)
    assert done.run_id == V1_DONE and done.resumed_points == 24
    assert done.broken_by.tolist() == [-1, -1, -1, -1, 0, -1, 1, 1, 0, -1, -1, -1, 0, -1, -1, 0, -1, -1, 0, -1, 0,
                                       -1, -1, -1]


def test_a_foreign_sqlite_file_is_refused_without_a_byte_written(tmp_path):
    p = tmp_path / "other.db"
    with sqlite3.connect(p) as c:
        c.execute("CREATE TABLE runs(x int)")
    before = p.read_bytes()
    for readonly in (False, True):
        with pytest.raises(ValueError, match="not a robustlab store"):
            Store(p, readonly=readonly)
    assert p.read_bytes() == before


def test_a_damaged_store_is_named_and_not_written(std_model, mnist_test, tmp_path):
    p = tmp_path / "runs.db"
    rl.evaluate(std_model, mnist_test[0][:200], mnist_test[1][:200], rl.LpBall("linf", 0.1), attacks="fgsm",
                store=p, batch_size=20, diagnostics=False)
    with sqlite3.connect(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(p.read_bytes())
    assert len(raw) > 12288 + 3000
    raw[12288:15288] = os.urandom(3000)
    p.write_bytes(bytes(raw))
    before = p.read_bytes()
    with pytest.raises(ValueError, match="damaged"):
        Store(p)
    with pytest.raises(ValueError, match="damaged"):
        Store(p, readonly=True)
    assert p.read_bytes() == before


def test_a_read_only_store_is_read_and_never_written(std_model, mnist_test, tmp_path):
    p = tmp_path / "runs.db"
    r = rl.evaluate(std_model, mnist_test[0][:20], mnist_test[1][:20], rl.LpBall("linf", 0.1), attacks="fgsm",
                    store=p, diagnostics=False)
    with sqlite3.connect(p) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.execute("PRAGMA journal_mode=DELETE")
    before = p.read_bytes()
    with Store(p, readonly=True) as s:  # what runs, report and leaderboard open
        assert s.readonly and s.run(r.run_id).status == "done"
        with pytest.raises(ValueError, match="cannot write"):
            s.write_metrics(r.run_id, 0, {})
    assert p.read_bytes() == before and not Path(str(p) + "-wal").exists()


def test_metrics_rows_for_other_run_kinds(tmp_path):
    with Store(tmp_path / "runs.db") as s:
        s.open_run("t1", config={}, config_hash="h", model_hash="m", data={}, threat="linf:0.3", code_version="x",
                   n=0, attacks=[], kind="training")
        s.write_metrics("t1", 0, {"loss": 1.5, "clean": 0.9})
        s.write_metrics("t1", 1, {"loss": 0.5, "clean": 0.95})
        s.write_metrics("t1", 1, {"loss": 0.4, "clean": 0.96})  # a rewritten step replaces the old
        assert s.metrics("t1") == [(0, {"clean": 0.9, "loss": 1.5}), (1, {"clean": 0.96, "loss": 0.4})]
        assert s.runs()[0].kind == "training"


def test_a_failing_model_marks_the_run_failed_and_keeps_finished_batches(std_model, mnist_test, tmp_path):
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    calls = {"n": 0}

    class Flaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = std_model

        def forward(self, t):
            calls["n"] += 1
            if t.shape == x[20:40].shape and torch.equal(t, x[20:40]):  # the second batch's clean pass
                raise RuntimeError("device fell over")
            return self.inner(t)

    p = tmp_path / "runs.db"
    with pytest.raises(rl.evaluation.runner.EvaluationFailed, match=r"batch 20:40 failed: RuntimeError: device fell"):
        rl.evaluate(Flaky(), x, y, rl.LpBall("linf", 0.1), attacks="fgsm", store=p, batch_size=20, diagnostics=False)
    with Store(p) as s:
        run = s.runs()[0]
        assert run.status == "failed" and "batch 20:40" in run.error and run.points_done == 20


# -- your own data ----------------------------------------------------------------------------------
def test_npz_in_any_layout(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 5, 6, 3), dtype=np.uint8)  # NHWC uint8
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(7))
    xs, ys = rl.data.load(str(tmp_path / "d.npz"), n=5, start=1)
    assert xs.shape == (5, 3, 5, 6) and xs.dtype == torch.float32 and ys.tolist() == [1, 2, 3, 4, 5]
    assert torch.allclose(xs[0], torch.from_numpy(x[1].transpose(2, 0, 1)).float() / 255)
    np.savez(tmp_path / "bad.npz", x=np.full((2, 1, 2, 2), 3.0), y=np.arange(2))
    with pytest.raises(ValueError, match=r"^data: .*\[0, 1\]"):
        rl.data.load(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "nolabels.npz", images=x)
    with pytest.raises(ValueError, match="'x' and 'y'"):
        rl.data.load(str(tmp_path / "nolabels.npz"))


def test_an_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    for k, cls in enumerate(["cat", "dog"]):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 5, 3), 40 * k + i, dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    x, y = rl.data.load(str(tmp_path / "imgs"))
    assert x.shape == (6, 3, 4, 5) and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert float(x[4].max()) == pytest.approx(41 / 255)
    Image.fromarray(np.zeros((9, 9), dtype=np.uint8)).save(tmp_path / "imgs" / "dog" / "odd.png")
    with pytest.raises(ValueError, match="one size"):
        rl.data.load(str(tmp_path / "imgs"))


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(1)
    recs = []
    for label in (3, 7):
        recs.append(bytes([label]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes())
    (tmp_path / "test_batch.bin").write_bytes(b"".join(recs))
    (tmp_path / "data_batch_1.bin").write_bytes(recs[1])
    x, y = rl.data.load(str(tmp_path), split="test")
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 7]
    assert float(x[0, 0, 0, 0]) == pytest.approx(recs[0][1] / 255)
    assert rl.data.load(str(tmp_path), split="train")[1].tolist() == [7]
    (tmp_path / "test_batch.bin").write_bytes(b"".join(recs)[:-5])
    with pytest.raises(ValueError, match="whole CIFAR-10 records"):
        rl.data.load(str(tmp_path), split="test")


def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_from_the_debian_folder_or_a_clear_error(tmp_path, monkeypatch):
    from robustlab.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "FOLDER", tmp_path)
    fashion_mnist.arrays.cache_clear()
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):
        rl.data.load("fashion-mnist", n=2)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 4]))
    fashion_mnist.arrays.cache_clear()
    monkeypatch.setitem(fashion_mnist.SIZES, "test", 2)
    x, y = rl.data.load("fashion-mnist", n=2)
    fashion_mnist.arrays.cache_clear()
    assert x.shape == (2, 1, 28, 28) and y.tolist() == [9, 4] and float(x[0, 0, 0, 1]) == pytest.approx(1 / 255)
