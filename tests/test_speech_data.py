"""The keyword data set, the audio threats (DbBall, SnrBall) and the report's audio fragment."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import wave

import numpy as np
import pytest
import torch

import robustlab as rl
from robustlab.data import keywords
from robustlab.report.audio_section import audio_section, wav_bytes
from robustlab.threats import check_lp, parse_threat


@pytest.fixture(scope="module")
def clips():
    return rl.data.load("keywords", split="test", n=24)


def test_load_shapes_range_and_balance():
    x, y = rl.data.load("keywords", split="test")
    assert x.shape == (480, 1, 8000) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.bincount(y, minlength=12).tolist() == [40] * 12
    assert rl.data.info("keywords").n_classes == 12 and keywords.label_index("stop") == 8
    # Silence clips are quiet noise, keyword clips are loud speech.
    peak = (2 * x[:, 0] - 1).abs().amax(dim=1)
    assert float(peak[y == 10].max()) < 0.2 and float(peak[y < 10].min()) > 0.25


def test_slices_equal_the_whole_split_and_errors_name_arguments():
    x, y = rl.data.load("keywords", split="train", n=30)
    xs, ys = rl.data.load("keywords", split="train", n=5, start=10)
    assert torch.equal(xs, x[10:15]) and torch.equal(ys, y[10:15])
    with pytest.raises(ValueError, match="split"):
        rl.data.load("keywords", split="val")
    with pytest.raises(ValueError, match="n:"):
        rl.data.load("keywords", split="test", n=10, start=475)


def test_train_and_test_voices_are_disjoint():
    d = keywords._file()
    variant = lambda v: {s.split("+", 1)[1] for s in v}
    tr, te = variant(d["voices_train"]), variant(d["voices_test"])
    assert len(tr) > 60 and len(te) >= 15 and not tr & te


def test_db_ball_radius_projection_and_distance(clips):
    x, _ = clips
    t = rl.DbBall(-30)
    assert check_lp(t) is t and t.norm == "linf"
    w = 2 * x - 1
    # A waveform change d is d / 2 in x units: radius = 10^(-30/20) * max|w| / 2.
    assert torch.allclose(t.radius(x), 10 ** (-1.5) * w.abs().flatten(1).amax(1) / 2)
    g = torch.Generator().manual_seed(0)
    far = (x + torch.randn(x.shape, generator=g)).clamp(0, 1)
    proj = t.project(far, x)
    assert t.admits(proj, x).all() and not t.admits(far, x).any()
    assert torch.allclose(t.distance(proj, x), torch.full((24,), -30.0), atol=0.01)
    start = t.random_start(x, g)
    assert t.admits(start, x).all() and bool((t.distance(start, x) < -30.0 + 1e-3).all())
    # Carlini & Wagner's dB_x on the waveform: dB(delta) - dB(w).
    dw = (2 * proj - 1) - w
    ref = 20 * torch.log10(dw.abs().flatten(1).amax(1)) - 20 * torch.log10(w.abs().flatten(1).amax(1))
    assert torch.allclose(t.distance(proj, x), ref, atol=1e-3)


def test_snr_ball_and_specs(clips):
    x, _ = clips
    t = rl.SnrBall(30)
    g = torch.Generator().manual_seed(1)
    proj = t.project(x + 0.1 * torch.randn(x.shape, generator=g), x)
    w, wa = 2 * x - 1, 2 * proj - 1
    snr = 20 * torch.log10(w.flatten(1).norm(dim=1) / (wa - w).flatten(1).norm(dim=1))
    assert bool((snr >= 30 - 1e-3).all()) and t.admits(proj, x).all()
    assert torch.allclose(t.distance(proj, x), -snr, atol=1e-3)
    for spec in ("db:-30", "db:-20.5", "snr:30"):
        assert parse_threat(spec).spec() == spec
    assert isinstance(parse_threat("db:-40"), rl.DbBall)
    with pytest.raises(ValueError, match="threat"):
        parse_threat("db:loud")
    with pytest.raises(TypeError, match="db"):
        rl.DbBall("-30")
    with pytest.raises(ValueError, match="x"):
        rl.DbBall(-30).validate(torch.rand(2, 8000))


def test_audio_section_embeds_decodable_wav(clips):
    x, y = clips
    t = rl.DbBall(-30)
    x_adv = t.random_start(x[:2], torch.Generator().manual_seed(0))
    page = audio_section(x[:2], x_adv, labels=keywords.LABELS, y=y[:2], pred=y[:2],
                         curve={"PGD": [(-40, 0.5), (-30, 0.9), (-20, 1.0)]}, max_examples=2)
    srcs = re.findall(r'<audio controls preload="none" src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(srcs) == 6  # clean, adversarial, amplified perturbation per example
    with wave.open(io.BytesIO(base64.b64decode(srcs[1]))) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()) == (1, 2, 8000, 8000)
        pcm = np.frombuffer(f.readframes(8000), dtype="<i2")
    expect = (2 * x_adv[0, 0].double().numpy() - 1) * 32767
    assert np.abs(pcm - expect).max() <= 0.5 + 1e-6  # 16-bit rounding only
    # The amplified perturbation peaks at the clean clip's peak.
    with wave.open(io.BytesIO(base64.b64decode(srcs[2]))) as f:
        amp = np.abs(np.frombuffer(f.readframes(8000), dtype="<i2")).max()
    assert abs(amp - np.abs(2 * x[0, 0].numpy() - 1).max() * 32767) <= 1
    assert page.count("<img") == 1 + 6
    with pytest.raises(ValueError, match="x_adv"):
        audio_section(x[:2], x_adv[:1])
    with pytest.raises(ValueError, match="rate"):
        wav_bytes(np.zeros(10), 0)


def test_success_curve_from_stored_distances():
    from robustlab.report.audio_section import curve_from_distances

    curve = dict(curve_from_distances(np.array([1, 1, 1, 0]), np.array([0, 0, 1, 0]),
                                      np.array([-35.0, -25.0, np.nan, np.nan]), -20.0, low=-40.0, points=5))
    assert curve == {-40.0: 0.0, -35.0: 1 / 3, -30.0: 1 / 3, -25.0: 2 / 3, -20.0: 2 / 3}


_PROBE = """<script>
const out = [];
document.querySelectorAll("audio").forEach((a, i) => {
  const put = (v) => { out[i] = v; document.body.setAttribute("data-decoded", out.join(",")); };
  a.addEventListener("loadedmetadata", () => put(a.duration.toFixed(3)));
  a.addEventListener("error", () => put("error"));
  a.preload = "auto"; a.load();
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed")
def test_headless_chromium_decodes_every_clip(clips, tmp_path):
    x, y = clips
    x_adv = rl.DbBall(-30).random_start(x[:2], torch.Generator().manual_seed(0))
    page = tmp_path / "audio.html"
    page.write_text("<!doctype html><html><body>" + audio_section(x[:2], x_adv, y=y[:2], pred=y[:2], max_examples=2)
                    + _PROBE + "</body></html>")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                          "--dump-dom", page.as_uri()], check=False, capture_output=True, text=True, timeout=120).stdout
    decoded = re.search(r'data-decoded="([^"]*)"', dom)
    assert decoded is not None and decoded.group(1).split(",") == ["1.000"] * 6  # six 1 s clips played back


def test_the_report_of_a_stored_audio_run_embeds_its_clips(tmp_path):
    from robustlab.report.html import write_report

    x, y = rl.data.load("keywords", split="test", n=6)
    db = tmp_path / "a.db"
    rep = rl.evaluate(rl.models.load("kws-cnn"), x, y, rl.DbBall(-30), attacks="pgd-10", store=db, diagnostics=False)
    assert bool((rep.distance[rep.broken_by >= 0] <= -30 + 1e-3).all())  # dB below the clip's peak, inside the ball
    page = write_report(db, rep.run_id, tmp_path / "a.html").read_text()
    clips = re.findall(r'<audio controls preload="none" src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(clips) >= 3 and all(base64.b64decode(c)[:4] == b"RIFF" for c in clips)
