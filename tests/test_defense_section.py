"""The report's defense section: both evaluations of a real defended model side by side."""
from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files

import pytest

import robustlab as rl
from robustlab.attacks import PGD
from robustlab.defenses import DetectionSummary
from robustlab.report.defense_section import render_defense_section


@pytest.fixture(scope="module")
def jpeg_reports():
    x, y = rl.data.load("mnist", "test", n=32)
    defended = rl.models.load("mnist-cnn+jpeg")
    threat = rl.LpBall("linf", 0.3)
    attacks = [PGD(threat, steps=10, seed=0)]
    naive = rl.evaluate(defended, x, y, threat, attacks, view="naive", diagnostics=False)
    adaptive = rl.evaluate(defended, x, y, threat, attacks, diagnostics=False)
    return defended, naive, adaptive


def test_section_shows_both_numbers_and_warns_on_the_gap(jpeg_reports):
    defended, naive, adaptive = jpeg_reports
    assert naive.robust_accuracy > adaptive.robust_accuracy + 0.05  # JPEG only hides the gradient
    html = render_defense_section(naive, adaptive, defense=defended.spec())
    assert f"{100 * naive.robust_accuracy:.2f}%" in html and f"{100 * adaptive.robust_accuracy:.2f}%" in html
    assert 'class="banner warn" id="defense-gap"' in html and "jpeg:q50" in html
    calm = render_defense_section(adaptive, adaptive)
    assert 'class="banner pass"' in calm


def test_section_escapes_and_checks(jpeg_reports):
    _, naive, adaptive = jpeg_reports
    det = [DetectionSummary("<script>x</script>", 10, 0.9, 0.05, 0.97, 0.1)]
    html = render_defense_section(naive, adaptive, defense="<b>", detection=det)
    assert "<script>x" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert "90.00%" in html
    with pytest.raises(TypeError, match="naive"):
        render_defense_section(None, adaptive)
    with pytest.raises(ValueError, match="gap_warn"):
        render_defense_section(naive, adaptive, gap_warn=2.0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless chromium")
def test_section_renders_in_headless_chromium(jpeg_reports, tmp_path):
    _, naive, adaptive = jpeg_reports
    css = (files("robustlab.report") / "templates" / "base.css").read_text()
    page = tmp_path / "section.html"
    page.write_text(f"<!doctype html><html><head><style>{css}</style></head><body>"
                    f"{render_defense_section(naive, adaptive)}</body></html>")
    out = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.count('class="card naive"') == 1 and out.stdout.count('class="card adaptive"') == 1


def test_report_pairs_naive_and_adaptive_runs_when_the_defense_adds_its_own_attack(tmp_path):
    """On 1-bit depth the adaptive run of a preset also runs the defense's squeezing attack; the
    stored report still finds the naive twin (same preset) and shows both blocks."""
    from robustlab.evaluation.store import Store
    from robustlab.report.html import write_report

    x, y = rl.data.load("mnist", "test", n=8)
    defended, threat, db = rl.models.load("mnist-cnn+bitdepth"), rl.LpBall("linf", 0.3), tmp_path / "runs.db"
    naive = rl.evaluate(defended, x, y, threat, "pgd-10", view="naive", diagnostics=False, store=db)
    adaptive = rl.evaluate(defended, x, y, threat, "pgd-10", diagnostics=False, store=db)
    assert len(adaptive.attacks) == len(naive.attacks) + 1
    page = write_report(db, adaptive.run_id, tmp_path / "r.html").read_text()
    assert 'class="card naive"' in page and 'class="card adaptive"' in page
    assert len(Store(db).runs()) == 2
