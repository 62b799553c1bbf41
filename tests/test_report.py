"""The HTML report and the leaderboard: self-contained pages, user strings escaped, ranked
rows; rendered in headless Chromium to check what a reader actually sees."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import robustlab as rl
from robustlab.cli import main
from robustlab.report.html import load_run, render_report
from robustlab.report.leaderboard import leaderboard, render_leaderboard, rich_tables

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")
HOSTILE = "<script>alert('x')</script>&[bold]"
THREAT = rl.LpBall("linf", 0.1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with three finished runs on the same 40 points (two from the CLI, one from the
    library under a hostile model name) and one on other points."""
    d = tmp_path_factory.mktemp("store")
    db = d / "runs.db"
    common = ["--model", "mnist-cnn", "--n", "40", "--threat", "linf:0.1", "--store", str(db)]
    assert main(["evaluate", *common, "--attacks", "fgsm"]) == 0
    assert main(["evaluate", *common, "--attacks", "fgsm,pgd-5", "--no-diagnostics"]) == 0
    x, y = rl.data.load("mnist", n=40)
    rep = rl.evaluate(rl.models.load("mnist-cnn"), x, y, THREAT, "pgd-2", store=db, diagnostics=False,
                      data={"name": "mnist", "split": "test", "start": 0, "model": HOSTILE})
    x2, y2 = rl.data.load("mnist", n=20, start=100)
    rl.evaluate(rl.models.load("mnist-cnn"), x2, y2, THREAT, "fgsm", store=db, diagnostics=False,
                data={"name": "mnist", "split": "test", "start": 100, "model": "mnist-cnn"})
    return db, rep.run_id


def _chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1200,2400", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180)


def _see(page: Path, tmp: Path) -> tuple[np.ndarray, str]:
    """(screenshot pixels, DOM after rendering) of a page in headless Chromium."""
    shot = tmp / (page.stem + ".png")
    proc = _chromium(page, tmp, f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(str(shot))
    dom = _chromium(page, tmp, "--dump-dom").stdout
    assert "</html>" in dom
    return pixels, dom


def _no_external_resources(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html


def test_report_is_self_contained_and_escapes_user_strings(store):
    db, run_id = store
    page = render_report(load_run(db, run_id))
    _no_external_resources(page)
    assert HOSTILE not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;[bold]" in page
    imgs = re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3
    from matplotlib.image import imread

    for b in imgs:
        arr = imread(io.BytesIO(base64.b64decode(b)), format="png")
        assert arr.shape[0] > 200 and arr.shape[1] > 400 and arr.std() > 0.01  # a real plot, not blank


def test_report_cli_writes_the_page(store, tmp_path, capsys):
    db, run_id = store
    out = tmp_path / "r.html"
    assert main(["report", run_id[:8], "--store", str(db), "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out and out.stat().st_size > 20_000
    assert main(["report", "ffffffffff", "--store", str(db)]) == 2
    assert "no run matches" in capsys.readouterr().err


@needs_chromium
def test_report_as_a_reader_sees_it(store, tmp_path):
    db, _ = store
    with rl.Store(db) as s:
        cli_run = next(r for r in s.runs() if r.attacks == ["FGSM"] and r.data["start"] == 0)  # CLI, diagnostics on
    out = tmp_path / "report.html"
    assert main(["report", cli_run.run_id, "--store", str(db), "--out", str(out)]) == 0
    pixels, dom = _see(out, tmp_path)
    assert pixels.std() > 0.01  # something is drawn
    data = load_run(db, cli_run.run_id)
    assert len(data.diagnostics) == 10
    assert dom.count('class="diag-row"') == len(data.diagnostics)
    assert len(re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,', dom)) == 3
    assert dom.count('class="num eps-point"') == 12  # the eps curve as numbers, at 12 radii
    assert "id=\"tradeoff\"" in dom and "clean vs robust accuracy across runs" in dom  # the store's trade-off
    assert "id=\"gallery\"" in dom or "id=\"per-class\"" in dom
    assert dom.count('class="attack-row"') == 2  # clean + FGSM
    assert "robust accuracy (linf:0.1)" in dom
    assert '[model]\nname = "mnist-cnn"' in dom and "robustlab evaluate --config" in dom  # the config
    assert re.search(r'id="robust-card".*?\d+\.\d\d%', dom, re.S)


def test_leaderboard_ranks_per_data_and_threat(store):
    db, _ = store
    groups, unfinished = leaderboard(db)
    assert unfinished == 0
    assert [len(g.entries) for g in groups] == [3, 1]
    assert groups[0].data == "mnist/test[0:40]" and groups[1].data == "mnist/test[100:120]"
    ranked = groups[0].entries
    robust = [e.robust_accuracy for e in ranked]
    assert robust == sorted(robust, reverse=True) and robust[0] > robust[-1]
    assert ranked[0].attacks == ["FGSM"]  # the weakest attack gives the highest (least honest) number ...
    assert "more_steps" in ranked[0].warnings  # ... and its diagnostics say so next to it
    assert [e.rank for e in ranked] == [1, 2, 3]
    assert [e.diagnosed for e in ranked if e.attacks != ["FGSM"]] == [False, False]
    page = render_leaderboard(groups, unfinished, "runs.db")
    _no_external_resources(page)
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_leaderboard_cli_table(store, capsys):
    db, _ = store
    assert main(["leaderboard", str(db)]) == 0
    out = capsys.readouterr().out
    assert "mnist/test[0:40], threat linf:0.1" in out and "mnist/test[100:120]" in out
    assert "not run" in out and "warn: " in out  # diagnostics, or their absence, next to each number
    wide = Console(width=400, record=True)
    for t in rich_tables(leaderboard(db)[0]):
        wide.print(t)
    assert HOSTILE in wide.export_text()  # shown literally: not eaten as rich markup
    assert main(["leaderboard", "/nonexistent/runs.db"]) == 2


@needs_chromium
def test_leaderboard_page_as_a_reader_sees_it(store, tmp_path, capsys):
    db, _ = store
    out = tmp_path / "leaderboard.html"
    assert main(["leaderboard", str(db), "--out", str(out)]) == 0
    capsys.readouterr()
    pixels, dom = _see(out, tmp_path)
    assert pixels.std() > 0.01
    assert dom.count('class="lb-row"') == 4
    assert dom.count('<section class="group">') == 2
    assert len(re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,', dom)) == 2
    assert len(re.findall(r'<img class="plot tradeoff"[^>]*src="data:image/png;base64,', dom)) == 2
    rows = re.findall(r'<tr class="lb-row"><td class="num">(\d+)</td>', dom)
    assert rows == ["1", "2", "3", "1"]
    assert "&lt;script&gt;" in dom and "<script>alert" not in dom


def test_leaderboard_marks_standard_evaluations_and_labels_every_bar(tmp_path):
    from robustlab.attacks import APGD, APGDT, FAB
    from robustlab.report.leaderboard import leaderboard

    x, y = rl.data.load("mnist", n=10)
    t = rl.LpBall("linf", 0.3)
    db = tmp_path / "runs.db"
    model = rl.models.load("mnist-cnn")
    rl.evaluate(model, x, y, t, [FAB(t, steps=3)], store=db, diagnostics=False, name="fab-alone")
    rl.evaluate(model, x, y, t, [APGD(t, steps=3), APGDT(t, steps=3, n_target_classes=2), FAB(t, steps=3)],
                store=db, diagnostics=False, name="standard-like")
    (group,), _ = leaderboard(db)
    marks = {e.model: e.attacks[0] for e in group.entries}
    assert marks["standard-like"] == "[standard evaluation]" and not marks["fab-alone"].startswith("[")
