"""Policies under observation attacks: seeded episodes, clean, under same-budget noise and under
each attack, with the return, the steps attacked and the cost of every episode.

    report = rl.evaluate_policy(rl.models.load("cartpole-dqn"), "CartPole-v1", "state:0.1",
                                ["pgd", "timed-pgd"], episodes=100, seed=0, store=Store("runs.db"))

Episode i starts from ``reset(seed=seed + i)``; all episodes of a batch run together (CartPole on
the bit-exact batched dynamics, other environments through gymnasium). Each attack draws its
random numbers from a stream of its own episode, so a resumed run repeats the same episodes.
Every attacked observation is checked against the ball before the policy acts on it.
"""
from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.attacks.policy import ObsAttack, ObsNoise, parse_policy_attack
from robustlab.envs import make_batched
from robustlab.envs.rollout import greedy_rollout
from robustlab.evaluation.policy_store import PolicyRuns
from robustlab.threats import LpBall, parse_threat
from robustlab.threats.obs import StateBall


@dataclass
class EpisodeStats:
    """One setting (clean, noise or an attack) over the evaluated episodes (episode order).

    Attributes:
        returns: undiscounted return of each episode.
        steps: steps of each episode.
        attacked: steps whose observation was perturbed, per episode (for the PGD-based attacks:
            the steps whose action the attack changed; noise perturbs every step).
        forward / backward: model passes the attack spent, per episode (counted).
        seconds: wall time of this setting's rollouts in this call (0 for episodes read back).
    """

    name: str
    returns: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    attacked: list[int] = field(default_factory=list)
    forward: list[int] = field(default_factory=list)
    backward: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def attacked_fraction(self) -> float:
        """Attacked steps over all steps taken (0..1)."""
        total = sum(self.steps)
        return sum(self.attacked) / total if total else 0.0


@dataclass
class PolicyReport:
    """What ``evaluate_policy`` measured: per-episode returns clean, under noise, under attack."""

    env: str
    model: str
    threat: str
    scale: list[float]
    seed: int
    clean: EpisodeStats
    noise: EpisodeStats | None
    attacks: list[EpisodeStats]
    run_id: str | None = None

    @property
    def episodes(self) -> int:
        return len(self.clean.returns)

    def worst(self) -> EpisodeStats:
        """The attack with the lowest mean return (the clean setting when there is none)."""
        return min(self.attacks, key=lambda s: s.mean_return) if self.attacks else self.clean

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_state_ball(threat: object) -> StateBall:
    """The state-scaled ball a threat means for a policy: a StateBall, "state:0.1", or an Linf
    spec/LpBall ("linf:0.1"), read as state-scaled (observations have no [0, 1] box)."""
    if isinstance(threat, StateBall):
        return threat
    if isinstance(threat, str):
        threat = parse_threat(threat)
        if isinstance(threat, StateBall):
            return threat
    if isinstance(threat, LpBall):
        if threat.norm != "linf":
            raise ValueError(f"threat: policies are attacked in a state-scaled Linf ball; got {threat.spec()!r}")
        return StateBall(threat.eps)
    raise TypeError(f"threat: expected a StateBall or a spec such as 'state:0.1', got {type(threat).__name__}")


def _attacks(attack: object) -> list[ObsAttack]:
    items = [] if attack is None else [attack] if isinstance(attack, (str, ObsAttack)) else list(attack)  # type: ignore[arg-type]
    out = []
    for a in items:
        a = parse_policy_attack(a) if isinstance(a, str) else a
        if not isinstance(a, ObsAttack):
            raise TypeError(f"attack: expected an observation attack or its name, got {type(a).__name__}")
        out.append(a)
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise ValueError(f"attack: names must be distinct, got {names}")
    return out


def model_hash(policy: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(policy.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def rollout(policy: nn.Module, env_id: str, seeds: Sequence[int], ball: StateBall | None = None,
            attack: ObsAttack | None = None, stream: int = 0, fast: bool = True,
            record: bool = False) -> tuple[EpisodeStats, list[list[int]]]:
    """One greedy episode per seed, all in one batch, each observation passed through ``attack``.

    ``stream`` seeds the attack's per-episode random numbers (episode seed s uses stream + s).
    Returns the stats (episode order = ``seeds`` order) and, with ``record``, each episode's actions.
    """
    env = make_batched(env_id, fast=fast)
    obs = env.reset(seeds)
    n, d = obs.shape
    k = attack.n_random(d) if attack is not None else 0
    u = None
    if k:
        gens = [torch.Generator().manual_seed(int(stream + s) % (2**63)) for s in seeds]
        u = torch.stack([torch.rand(env.max_steps, k, generator=g) for g in gens])
    total = np.zeros(n)
    attacked = np.zeros(n, dtype=np.int64)
    fwd = np.zeros(n, dtype=np.int64)
    bwd = np.zeros(n, dtype=np.int64)
    actions: list[list[int]] = [[] for _ in range(n)]
    t0 = time.perf_counter()
    t = 0
    while not env.done.all():
        live = torch.from_numpy(np.flatnonzero(~env.done))
        seen = obs[live]
        if attack is not None:
            with torch.enable_grad():
                res = attack(policy, seen, ball, u[live, t] if u is not None else None)  # type: ignore[arg-type]
            ok = ball.admits(res.obs_adv, seen)  # type: ignore[union-attr]
            if not bool(ok.all()):
                raise RuntimeError(f"attack {attack.name} returned an observation outside {ball.spec()} "  # type: ignore[union-attr]
                                   f"(max distance {float(ball.distance(res.obs_adv, seen).max()):.4g})")  # type: ignore[union-attr]
            seen = res.obs_adv
            attacked[live.numpy()] += res.attacked.cpu().numpy()
            fwd[live.numpy()] += res.forward.cpu().numpy()
            bwd[live.numpy()] += res.backward.cpu().numpy()
        act = torch.zeros(n, dtype=torch.int64)
        act[live] = policy(seen).argmax(dim=1).cpu()
        if record:
            for i, a in zip(live.tolist(), act[live].tolist()):
                actions[i].append(a)
        obs, reward, _, _ = env.step(act)
        total += reward.numpy()
        t += 1
    name = "clean" if attack is None else attack.name
    stats = EpisodeStats(name, total.tolist(), env.steps.tolist(), attacked.tolist(), fwd.tolist(), bwd.tolist(),
                         time.perf_counter() - t0)
    return stats, actions


def bind_scale(ball: StateBall, policy: nn.Module, env_id: str, seeds: Sequence[int]) -> StateBall:
    """``ball`` measured in the policy's own state std: the ball's scale if bound, else the
    policy's ``state_std`` buffer, else the std over its clean episodes on ``seeds``."""
    if ball.scale is not None:
        return ball
    std = getattr(policy, "state_std", None)
    if isinstance(std, Tensor) and bool((std > 0).all()) and not bool((std == 1).all()):
        return ball.bind(std)
    _, visited = greedy_rollout(policy, env_id, seeds)
    return ball.bind(visited.std(dim=0).clamp_min(1e-6))


def evaluate_policy(policy: nn.Module, env: str = "CartPole-v1", threat: object = "state:0.1",
                    attack: object = "pgd", episodes: int = 100, seed: int = 0, store: Any = None,
                    noise: bool = True, *, batch_size: int = 100, fast: bool = True, model_name: str | None = None,
                    progress: Any = None) -> PolicyReport:
    """Return of ``policy`` on ``episodes`` seeded episodes of ``env``: clean, under uniform noise
    of the threat's budget, and under each attack.

    Args:
        policy: nn.Module, observations (N, D) float32 raw units -> action scores (N, A); greedy.
        env: gymnasium id ("CartPole-v1", "Acrobot-v1", ...).
        threat: a StateBall or spec ("state:0.1"; "linf:0.1" means the same). An unbound ball is
            measured in the policy's ``state_std`` (or the std over its clean episodes).
        attack: an ObsAttack, a name ("pgd", "fgsm", "min-q", "timed-pgd", "noise-corners") or a list.
        episodes: number of episodes; episode i starts from ``reset(seed=seed + i)``.
        store: a ``Store``: each episode's figures are written as one metrics row (run kind
            "policy"); episodes already stored for the same run are read back, not rerun.
        batch_size: episodes run together.
        progress: callable(done, total) called after each batch.
    """
    if not isinstance(policy, nn.Module):
        raise TypeError(f"policy: expected an nn.Module, got {type(policy).__name__}")
    if not isinstance(env, str):
        raise TypeError(f"env: expected a gymnasium id such as 'CartPole-v1', got {type(env).__name__}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: expected an integer >= 1, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    attacks = _attacks(attack)
    settings: list[ObsAttack | None] = [None] + ([ObsNoise()] if noise else []) + attacks  # type: ignore[list-item]
    names = ["clean"] + [a.name for a in settings[1:]]  # type: ignore[union-attr]
    if len(set(names)) != len(names):
        raise ValueError(f"attack: {names[1:]} repeats a setting (noise is added unless noise=False)")
    seeds = list(range(seed, seed + episodes))
    was_training = policy.training
    policy.eval()
    try:
        ball = bind_scale(as_state_ball(threat), policy, env, seeds)
        config = {"kind": "policy", "env": env, "gymnasium": _gym_version(), "model": model_name or type(policy).__name__,
                  "model_hash": model_hash(policy), "threat": ball.spec(), "scale": list(ball.scale or ()),
                  "settings": [repr(a) for a in settings], "episodes": episodes, "seed": seed, "fast": fast,
                  # stored episodes from before the PGD attacks counted only changed actions are not reused
                  "attacked": "changed-actions"}
        runs = PolicyRuns(store, config) if store is not None else None
        rows: dict[int, dict[str, Any]] = runs.done() if runs is not None else {}
        stats = {nm: EpisodeStats(nm) for nm in names}
        per_ep: dict[int, dict[str, Any]] = dict(rows)
        todo = [s for s in seeds if s - seed not in rows]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            results = {}
            for nm, a in zip(names, settings):
                stream = zlib.crc32(nm.encode()) * 1_000_003
                results[nm], _ = rollout(policy, env, chunk, ball, a, stream=stream, fast=fast)
                stats[nm].seconds += results[nm].seconds
            for j, s in enumerate(chunk):
                row = {f"{nm}.{key}": getattr(results[nm], key)[j]
                       for nm in names for key in ("returns", "steps", "attacked", "forward", "backward")}
                per_ep[s - seed] = row
                if runs is not None:
                    runs.write(s - seed, row)
            if progress is not None:
                progress(episodes - len(todo) + start + len(chunk), episodes)
        for i in range(episodes):
            for nm in names:
                for key in ("returns", "steps", "attacked", "forward", "backward"):
                    getattr(stats[nm], key).append(per_ep[i][f"{nm}.{key}"])
        report = PolicyReport(env, config["model"], ball.spec(), list(ball.scale or ()), seed, stats["clean"],
                              stats["noise"] if noise else None, [stats[a.name] for a in attacks],
                              runs.run_id if runs is not None else None)
        if runs is not None:
            runs.finish({"clean": report.clean.mean_return,
                         **({"noise": report.noise.mean_return} if report.noise else {}),
                         **{s.name: s.mean_return for s in report.attacks}})
        return report
    finally:
        policy.train(was_training)


def _gym_version() -> str:
    try:
        import gymnasium

        return str(gymnasium.__version__)
    except ImportError:  # the batched CartPole needs no gymnasium
        return "none"


def check_min_return(report: PolicyReport, min_return: float) -> tuple[bool, str]:
    """The CI gate: (passed, one line) - passed when the worst attack's mean return >= min_return."""
    worst = report.worst()
    ok = worst.mean_return >= min_return
    verdict = "passes" if ok else "FAILS"
    return ok, (f"{verdict} the gate: mean return under {worst.name} {worst.mean_return:.1f} "
                f"{'>=' if ok else '<'} {min_return:g} ({report.episodes} episodes, {report.threat})")


def report_json(report: PolicyReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
