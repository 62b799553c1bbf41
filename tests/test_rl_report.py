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
