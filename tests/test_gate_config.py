"""Configs and the CI gate: every CLI run writes its config, `--config` reproduces the run, and
`--min-robust-acc` fails a weak model (exit 1, the figure in the last line) while passing a
strong one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robustlab.cli import main
from robustlab.evaluation.config import EvalConfig, dumps_config, load_config, save_config
from robustlab.models.zoo import weights_path

REPO = Path(__file__).resolve().parents[1]
needs_at = pytest.mark.skipif(not weights_path("mnist-cnn-at").is_file(), reason="mnist-cnn-at weights not trained yet")


def test_config_round_trip_with_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    builder = tmp_path / "model.py"
    cfg = EvalConfig(model=str(builder), weights=str(tmp_path / "w.safetensors"), n=None, threat="l2:1.5",
                     attacks="fgsm,pgd-100x2", seed=3, diagnostics=False, min_robust_acc=0.75,
                     store=str(tmp_path / "sub" / "runs.db"), workers=2, ray="auto")
    path = save_config(cfg, tmp_path / "sub" / "c.toml")
    text = path.read_text()
    assert 'name = "../model.py"' in text and 'store = "runs.db"' in text  # relative to the file
    assert 'n = "all"' in text and "min_robust_acc = 0.75" in text
    back = load_config(path)
    assert back == cfg
    # Strings that need escaping survive.
    odd = EvalConfig(model='we"ird\\name\t\x7f', attacks="pgd")
    p2 = tmp_path / "odd.toml"
    p2.write_text(dumps_config(odd))
    assert load_config(p2).model == odd.model


@pytest.mark.parametrize("body,needle", [
    ("[model]\nname = 'mnist-cnn'\n[bogus]\nx = 1\n", "unknown section [bogus]"),
    ("[model]\nname = 'mnist-cnn'\n[data]\nsize = 3\n", "unknown key [data] size"),
    ("[model]\nname = 'mnist-cnn'\n[data]\nn = 'ten'\n", "[data] n: expected int"),
    ("[model]\nname = 'mnist-cnn'\n[gate]\nmin_robust_acc = 80\n", "[gate] min_robust_acc: expected a fraction"),
    ("[evaluation]\nseed = 1\n", "missing [model] name"),
    ("[model\nname = 1", "not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path, body, needle):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(ValueError) as e:
        load_config(p)
    assert needle in str(e.value)


def test_every_run_writes_its_config_and_config_reproduces_it(tmp_path, capsys):
    db = tmp_path / "runs.db"
    args = ["evaluate", "--model", "mnist-cnn", "--n", "30", "--threat", "linf:0.1", "--attacks", "fgsm,pgd-3",
            "--store", str(db), "--no-diagnostics"]
    assert main(args) == 0
    out = capsys.readouterr().out
    written = sorted(tmp_path.glob("runs-*.toml"))
    assert len(written) == 1 and str(written[0].name) in out
    cfg = load_config(written[0])
    assert (cfg.model, cfg.n, cfg.threat, cfg.attacks, cfg.diagnostics) == ("mnist-cnn", 30, "linf:0.1", "fgsm,pgd-3", False)
    assert Path(cfg.store) == db
    run_id = out.split("run ")[1].split()[0]

    # The written config alone reproduces the run: same identity, every point resumed.
    assert main(["evaluate", "--config", str(written[0])]) == 0
    out2 = capsys.readouterr().out
    assert f"run {run_id}" in out2 and "resumed: 30 points" in out2

    # Options on the command line override the file; --save-config says where to write.
    other = tmp_path / "other.toml"
    assert main(["evaluate", "--config", str(written[0]), "--n", "20", "--save-config", str(other)]) == 0
    capsys.readouterr()
    assert load_config(other).n == 20 and load_config(other).attacks == "fgsm,pgd-3"


def test_missing_config_file_is_one_line_exit_2(tmp_path, capsys):
    assert main(["evaluate", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "config: no such file" in capsys.readouterr().err


def test_gate_fails_the_standard_model_with_exit_1_and_the_figure_last(tmp_path):
    # The real console entry point, as a CI job runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "robustlab.cli", "evaluate", "--model", "mnist-cnn", "--n", "100",
         "--attacks", "pgd-10", "--no-diagnostics", "--min-robust-acc", "0.8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert "FAIL" in last and "robust accuracy 0.00%" in last and "80.00%" in last
    # No store and no --save-config: nothing is written into the working folder.
    assert not list(tmp_path.glob("*.toml"))


@needs_at
def test_gate_passes_the_adversarially_trained_model(tmp_path, capsys):
    rc = main(["evaluate", "--model", "mnist-cnn-at", "--n", "100", "--attacks", "pgd-20", "--no-diagnostics",
               "--min-robust-acc", "0.8", "--store", str(tmp_path / "runs.db")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0, last
    assert last.startswith("gate PASS") and "robust accuracy" in last


@needs_at
def test_example_config_runs_and_gates(tmp_path, capsys):
    rc = main(["evaluate", "--config", str(REPO / "examples" / "eval.toml"), "--n", "50", "--attacks", "pgd-10",
               "--no-diagnostics", "--store", str(tmp_path / "runs.db")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0 and last.startswith("gate PASS"), last
    assert load_config(next(tmp_path.glob("runs-*.toml"))).model == "mnist-cnn-at"


def test_access_level_round_trips_through_the_config(tmp_path):
    from robustlab.evaluation.config import EvalConfig, load_config, save_config

    cfg = EvalConfig(model="mnist-cnn", access="label", attacks="hsj-1k", n=10)
    path = save_config(cfg, tmp_path / "label.toml")
    assert load_config(path).access == "label"
    with pytest.raises(ValueError, match=r"\[model\] access"):
        EvalConfig(model="mnist-cnn", access="grey")
