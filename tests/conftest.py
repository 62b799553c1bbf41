from __future__ import annotations

import pytest
import torch

import robustlab as rl


@pytest.fixture(scope="session")
def mnist_test():
    """The first 1000 MNIST test points: x (1000, 1, 28, 28) in [0, 1], y (1000,)."""
    return rl.data.load("mnist", split="test", n=1000)


@pytest.fixture(scope="session")
def std_model():
    return rl.models.load("mnist-cnn")


@pytest.fixture(scope="session")
def at_model():
    return rl.models.load("mnist-cnn-at")


@pytest.fixture(scope="session")
def net(std_model):
    """The standard MNIST model (the black-box and access tests' name for it)."""
    return std_model


@pytest.fixture(scope="session")
def batch():
    """The first 20 MNIST test points."""
    return rl.data.load("mnist", n=20)


@pytest.fixture(scope="session")
def digits_clf():
    """A scikit-learn logistic regression fitted on the digits training split."""
    from sklearn.linear_model import LogisticRegression

    xt, yt = rl.data.load("digits", split="train")
    return LogisticRegression(max_iter=2000).fit(xt.flatten(1).numpy(), yt.numpy())


@pytest.fixture(scope="session")
def score_server(net):
    """The standard model served over HTTP at score access (requests shaped (N, 1, 28, 28))."""
    from robustlab.models.serve import ModelServer

    with ModelServer(net, access="score", input_shape=(1, 28, 28)) as s:
        yield s


@pytest.fixture(scope="session")
def label_server(net):
    """The standard model served over HTTP at label access."""
    from robustlab.models.serve import ModelServer

    with ModelServer(net, access="label") as s:
        yield s


@pytest.fixture
def linf03():
    return rl.LpBall("linf", 0.3)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- the shipped CartPole DQN and states it visits (RL tests: test_rl_policies, test_rl_adversary) --
@pytest.fixture(scope="module")
def dqn():
    torch.set_num_threads(1)
    return rl.models.load("cartpole-dqn")


@pytest.fixture(scope="module")
def visited(dqn):
    from robustlab.envs.rollout import greedy_rollout

    _, obs = greedy_rollout(dqn, "CartPole-v1", range(2))
    return obs[::4]
