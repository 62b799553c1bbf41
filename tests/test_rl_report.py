"""The policy section of the report: return curves and the episode strip (issue 18)."""
from __future__ import annotations

import base64
import io

import pytest
import torch

import robustlab as rl
from robustlab.attacks.policy import ObsPGD
from robustlab.report.policy_section import episode_strip, policy_section, return_curves

pytest.importorskip("pygame")


def _image(png: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(png)))


@pytest.mark.slow
def test_strip_shows_the_clean_episode_outlasting_the_attacked_one():
    torch.set_num_threads(1)
    policy = rl.models.load("cartpole-dqn")
    ball = rl.StateBall(0.5).bind(policy.state_std)
    strip = episode_strip(policy, "CartPole-v1", 0, ball, ObsPGD(), frames=4)
    png, n_clean, n_adv = strip
    assert n_clean == 500 and n_adv < 100  # the replay in gymnasium retraced the batched episodes
    img = _image(png)
    assert img.width > 2 * img.height
    html = policy_section({"cartpole-dqn": {"noise": {0.1: 500.0, 0.5: 430.0}, "pgd": {0.1: 500.0, 0.5: 30.0}}},
                          {"cartpole-dqn": 500.0}, strip, "seed 0.")
    assert html.count("<img") == 2 and f"attacked: {n_adv} steps" in html


def test_return_curves_rejects_nothing_to_draw():
    with pytest.raises(ValueError, match="curves"):
        return_curves({})
    assert _image(return_curves({"pgd": {0.1: 400.0, 0.2: 100.0}}, clean=500.0)).width > 100


def test_the_report_of_a_policy_run_shows_curves_and_the_strip_not_classifier_cards(tmp_path):
    from robustlab.report.html import load_run, write_report

    pytest.importorskip("pygame")
    db = tmp_path / "p.db"
    rep = rl.evaluate_policy(rl.models.load("cartpole-dqn"), "CartPole-v1", "state:0.4", "fgsm", episodes=2,
                             store=rl.Store(db), model_name="cartpole-dqn")
    (run,) = rl.Store(db, readonly=True).runs()
    out = write_report(db, run.run_id, tmp_path / "p.html")
    page = out.read_text()
    assert load_run(db, run.run_id).info.kind == "policy"
    assert 'class="policy"' in page and "return vs eps, cartpole-dqn" in page and 'alt="episode strip"' in page
    assert 'id="clean-card"' not in page and "Per-attack breakdown" not in page  # no classifier figures
    assert "CartPole-v1, 2 episode(s) from seed 0" in page and rep.clean is not None


def test_return_curves_show_negative_returns():
    """Acrobot-v1's returns are negative: the curve must be drawn inside the axes (a y axis pinned
    at 0 left only the legend's swatch of the pgd colour: ~55 pixels; drawn: ~850)."""
    import base64
    import io

    from matplotlib.image import imread

    from robustlab.report.policy_section import return_curves

    png = return_curves({"noise": {0.0: -82.0, 0.2: -82.7}, "pgd": {0.0: -82.0, 0.2: -356.6}}, clean=-82.0)
    img = imread(io.BytesIO(base64.b64decode(png)))
    red = (img[..., 0] > 0.6) & (img[..., 1] < 0.4) & (img[..., 2] < 0.4)  # plots.COLORS[1], the second series
    assert red.sum() > 300
