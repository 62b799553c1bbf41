"""Reinforcement-learning figures (issue 18): return under observation attacks vs eps for the
shipped policies (CartPole-v1 and Acrobot-v1, the environment read from each zoo entry), the
strategically-timed attack's share of attacked steps, and the rollout speed of the batched
CartPole evaluation against a plain gymnasium loop.

    python benchmarks/rl.py curves --models cartpole-dqn,cartpole-ppo --eps 0.1,0.2,0.3,0.4,0.5 --episodes 20
    python benchmarks/rl.py curves --models acrobot-dqn --eps 0.05,0.1,0.2 --episodes 20
    python benchmarks/rl.py speed --model cartpole-dqn --episodes 100
    python benchmarks/rl.py table            # benchmarks/results/rl.md from the saved JSON
    python benchmarks/rl.py card --model acrobot-dqn   # the headline point into the model card

Results go to benchmarks/results/rl-*.json (one file per model, merged over eps), then the table.
Every number is a mean over seeded episodes 0..N-1; "worst" is the per-episode minimum over the
attacks (the adversary picks its strategy per episode).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import robustlab as rl
from robustlab.evaluation.episodes import evaluate_policy

RESULTS = Path(__file__).resolve().parent / "results"
ENV = "CartPole-v1"


def env_of(model: str) -> str:
    """The gymnasium id a shipped policy acts in (its zoo entry's dataset)."""
    from robustlab.models.zoo import ZOO

    return ZOO[model].dataset if model in ZOO else ENV


def headline_eps(model: str) -> float:
    """The eps of the policy's own threat in the zoo ("state:0.4" -> 0.4; 0.4 when none)."""
    from robustlab.models.zoo import ZOO

    threat = ZOO[model].threat if model in ZOO else None
    return float(threat.split(":")[1]) if threat else 0.4


def result_files() -> list[Path]:
    """The per-model curve files (rl-MODEL[@UNITS].json), not the speed or probe files."""
    return sorted(p for p in RESULTS.glob("rl-*.json") if not p.name.startswith(("rl-speed-", "rl-probe-")))


def attacks_for(model: str, timed: str, extra: str = "", n_actions: int = 2) -> list[str]:
    """fgsm, pgd, the steady pushes (one per action), min-q (DQN), the timed attacks (``timed``:
    thresholds, or THRESHOLD:INNER such as 0.2:learned:cartpole-ppo-adversary), and ``extra`` names."""
    names = ["fgsm", "pgd"] + [f"pgd-action{a}" for a in range(n_actions)]
    for t in filter(None, timed.split(",")):
        thr, _, inner = t.partition(":")
        names.append(f"timed{float(thr):g}-{inner or 'pgd'}")
    return names + (["min-q"] if "dqn" in model else []) + [e for e in extra.split(",") if e]


def curves(args) -> None:
    for model in args.models.split(","):
        # --scale-from: the ball measured in another policy's state std (e.g. a robust policy in the
        # vanilla one's units, so that both face the same raw perturbation)
        tag = model + (f"@{args.scale_from}" if args.scale_from else "")
        path = RESULTS / f"rl-{tag}.json"
        env = env_of(model)
        data = json.loads(path.read_text()) if path.is_file() else {"model": tag, "points": {}}
        data["env"] = env
        policy = rl.models.load(model)
        std = rl.models.load(args.scale_from).state_std if args.scale_from else policy.state_std
        for eps in [float(e) for e in args.eps.split(",")]:
            t0 = time.time()
            rep = evaluate_policy(policy, env, rl.StateBall(eps).bind(std),
                                  attacks_for(model, args.timed, args.extra, policy.n_actions),
                                  episodes=args.episodes, seed=0, model_name=model)
            per = {s.name: s for s in [rep.noise] + rep.attacks}
            full = [s for s in rep.attacks if not s.name.startswith("timed") and s.name != "fgsm"]
            worst = np.min([s.returns for s in full], axis=0)
            data["points"][f"{eps:g}"] = {
                "clean": rep.clean.mean_return, "scale": rep.scale, "episodes": rep.episodes,
                "attacked_means": "steps whose action the attack changed",
                **{k: {"mean": s.mean_return, "min": min(s.returns), "attacked": s.attacked_fraction, "returns": s.returns,
                       "fwd_per_step": sum(s.forward) / max(sum(s.steps), 1),
                       "bwd_per_step": sum(s.backward) / max(sum(s.steps), 1)} for k, s in per.items()},
                "worst": {"mean": float(worst.mean()), "min": float(worst.min())},
                "seconds": time.time() - t0}
            print(model, eps, {k: round(v["mean"], 1) for k, v in data["points"][f"{eps:g}"].items()
                               if isinstance(v, dict)}, flush=True)
            path.write_text(json.dumps(data, indent=1))


def speed(args) -> None:
    """Episodes per second, the same greedy policy: the batched CartPole (all episodes in one
    batch) vs gymnasium one episode at a time; clean and with PGD-10 on every step."""
    import gymnasium as gym

    from robustlab.attacks.policy import ObsPGD
    from robustlab.evaluation.episodes import rollout
    from robustlab.threats.obs import StateBall

    if env_of(args.model) != ENV:
        raise SystemExit(f"--model: speed compares the batched CartPole with gymnasium; {args.model} is not a CartPole policy")
    policy = rl.models.load(args.model)
    ball = StateBall(args.speed_eps).bind(policy.state_std)
    out = {"model": args.model, "episodes": args.episodes, "torch_threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine()}
    for label, attack, n in (("clean", None, args.episodes), ("pgd", ObsPGD(), args.pgd_episodes)):
        t0 = time.perf_counter()
        stats, _ = rollout(policy, ENV, range(n), ball, attack)
        fast = time.perf_counter() - t0
        env = gym.make(ENV)
        t0 = time.perf_counter()
        returns = []
        for s in range(n):
            obs, _ = env.reset(seed=s)
            # the same per-episode random stream as the batched rollout (stream 0), so both
            # loops take the same actions and do the same work
            u = torch.rand(500, 4, generator=torch.Generator().manual_seed(s))
            total, done, t = 0.0, False, 0
            while not done:
                x = torch.from_numpy(obs)[None]
                if attack is not None:
                    with torch.enable_grad():
                        x = attack(policy, x, ball, u[t:t + 1]).obs_adv
                t += 1
                with torch.no_grad():
                    a = int(policy(x).argmax(1))
                obs, r, term, trunc, _ = env.step(a)
                total += r
                done = term or trunc
            returns.append(total)
        slow = time.perf_counter() - t0
        assert returns == stats.returns, "the batched rollout must equal gymnasium's"
        out[label] = {"batched_eps_per_s": n / fast, "gym_loop_eps_per_s": n / slow, "speedup": slow / fast,
                      "episodes": n, "mean_return_batched": float(np.mean(stats.returns)),
                      "mean_return_loop": float(np.mean(returns))}
        print(label, out[label], flush=True)
    (RESULTS / f"rl-speed-{args.model}.json").write_text(json.dumps(out, indent=1))


def probe(args) -> None:
    """Why a policy resists: is PGD the limit (PGD-50 vs PGD-10), how often can the ball choose
    the action at all (corners of the ball, on the policy's clean states), do constant offsets or
    periodic switching of the pushed action do better than the steady push, and what the steady
    push does with the ball in another policy's units. ``--episodes`` episodes per figure."""
    import itertools

    from robustlab.attacks.policy import ObsPGD
    from robustlab.attacks.policy_adversary import corner_realise, corners
    from robustlab.envs import BatchedCartPole
    from robustlab.envs.rollout import greedy_rollout
    from robustlab.evaluation.episodes import rollout
    from robustlab.threats.obs import StateBall

    if env_of(args.model) != ENV:
        raise SystemExit(f"--model: probe steers the batched CartPole; {args.model} is not a CartPole policy")
    policy = rl.models.load(args.model)
    eps = float(args.eps.split(",")[0])
    ball = StateBall(eps).bind(policy.state_std)
    seeds = range(args.episodes)
    out: dict = {"model": args.model, "eps": eps, "episodes": args.episodes}

    def mean(attack, b=ball):
        return float(np.mean(rollout(policy, ENV, seeds, b, attack, stream=5)[0].returns))

    for t in (1, 0):
        out[f"pgd10-action{t}"] = mean(ObsPGD(target=t))
        out[f"pgd50-action{t}"] = mean(ObsPGD(target=t, steps=50, step_size=0.1))
    out["pgd10-flip"], out["pgd50-flip"] = mean(ObsPGD()), mean(ObsPGD(steps=50, step_size=0.1))
    _, visited = greedy_rollout(policy, ENV, range(5))
    offsets = corners(ball, 4)
    with torch.no_grad():
        reach = [(corner_realise(policy, visited, torch.full((len(visited),), a), offsets) == a) for a in (0, 1)]
    out["share_either_action_reachable"] = float((reach[0] & reach[1]).float().mean())

    @torch.no_grad()
    def steered(rule) -> float:
        env = BatchedCartPole()
        obs, t = env.reset(seeds), 0
        while not env.done.all():
            obs, *_ = env.step(corner_realise(policy, obs, rule(t, obs), offsets))
            t += 1
        return float(env.steps.mean())

    one = lambda t, o: torch.ones(len(o), dtype=torch.long)
    out["steady_push1_corners"] = steered(one)
    waves = {}
    for period in (4, 8, 16, 32, 64, 128, 256):
        for phase in (0, period // 2):
            waves[f"{period}/{phase}"] = steered(
                lambda t, o, p=period, f=phase: torch.full((len(o),), int((t + f) % p < p // 2), dtype=torch.long))
    out["square_waves_best"] = min(waves.items(), key=lambda kv: kv[1])
    r = ball.per_dim(torch.zeros(1, 4))
    biases = {}
    for signs in itertools.product((-1.0, 0.0, 1.0), repeat=4):
        d = torch.tensor(signs) * r
        env = BatchedCartPole()
        obs = env.reset(seeds)
        with torch.no_grad():
            while not env.done.all():
                obs, *_ = env.step(policy(obs + d).argmax(1))
        biases[str(signs)] = float(env.steps.mean())
    out["constant_offset_best"] = min(biases.items(), key=lambda kv: kv[1])
    if args.scale_from:
        other = StateBall(eps).bind(rl.models.load(args.scale_from).state_std)
        out[f"pgd10-action1_in_{args.scale_from}_units"] = mean(ObsPGD(target=1), other)
        out[f"pgd10-action0_in_{args.scale_from}_units"] = mean(ObsPGD(target=0), other)
    print(json.dumps(out, indent=1), flush=True)
    (RESULTS / f"rl-probe-{args.model}.json").write_text(json.dumps(out, indent=1))


def table(args) -> None:
    lines = ["# Reinforcement learning: observation attacks on CartPole-v1 and Acrobot-v1 policies (issue 18)", "",
             "Greedy policies, seeded episodes 0..N-1 (gymnasium 1.4.0; CartPole on the bit-exact batched",
             "re-implementation, Acrobot through gymnasium's own environment, `envs.GymBatch`).",
             "Threat `state:EPS`: Linf ball of EPS standard deviations of each observation dimension over the",
             "policy's own clean episodes. Mean return per setting; `worst` is the per-episode minimum over",
             "pgd, pgd-actionK (one steady push per action) and min-q for DQN; `timed` attacks only steps whose softmax preference gap",
             "is >= its threshold. In brackets: the share of steps attacked, i.e. whose action the attack changed",
             "(a perturbation that leaves the action unchanged is not spent; noise perturbs every step).", "",
             "Commands (1 CPU thread each, on a 2-core machine shared with other jobs):",
             "`python benchmarks/rl.py curves --models cartpole-dqn --eps 0.4,0.2,0.3,0.5 --episodes 20 --timed 0.1,0.2,0.2:pgd-action1`,",
             "`python benchmarks/rl.py curves --models cartpole-ppo --eps 0.4,0.3,0.2,0.6,0.8 --episodes 20 --timed 0.1,0.05:pgd-action1,0.1:pgd-action1`,",
             "`python benchmarks/rl.py curves --models cartpole-dqn-robust --eps 0.4 --timed 0.2 --episodes 20` (and",
             "`--scale-from cartpole-dqn`: the ball in the vanilla policy's units, the same raw perturbation for both),",
             "`python benchmarks/rl.py curves --models cartpole-ppo-robust --eps 0.4 --timed 0.3 --episodes 20` (and",
             "`--scale-from cartpole-ppo`; these two points are from the previous session, before 'attacked' counted",
             "changed actions, so no shares are shown for them),",
             "`python benchmarks/rl.py probe --model cartpole-ppo --eps 0.4 --episodes 10 --scale-from cartpole-dqn`,",
             "`python benchmarks/rl.py speed --model cartpole-dqn --episodes 100 --pgd-episodes 30 --speed-eps 0.4`,",
             "`python benchmarks/rl.py curves --models acrobot-dqn --eps 0.1,0.2,0.3,0.05,0.5 --episodes 20 --timed 0.4,0.6`, then",
             "`python benchmarks/rl.py curves --models acrobot-dqn --eps 0.2 --episodes 20 --timed 0.4,0.6,0.1,0.2,0.1:pgd-action2,0.2:pgd-action2,0.2:fgsm`",
             "(more timed attacks at the headline eps; Acrobot-v1: return = minus the steps to swing up, -500 when the",
             "500-step limit is reached; the headline eps 0.2 is the smallest of 0.05/0.1/0.2/0.3/0.5 where the worst",
             "attack comes within 10% of the -500 floor while noise costs < 5 steps),",
             "`python benchmarks/rl.py curves --models acrobot-dqn-robust --eps 0.2 --timed 0.1 --episodes 20` (and",
             "`--scale-from acrobot-dqn`),",
             "`python benchmarks/rl.py table`.", "",
             "## Headline (each policy's zoo threat: state:0.4 for CartPole, state:" + f"{headline_eps('acrobot-dqn'):g}"
             + " for Acrobot; 20 episodes; computed from the JSON files)", "",
             ("| policy | env | eps | ball units | clean | noise | worst attack (strongest single attack) | best timed attack "
              "(share of steps) | issue target |"), "|---|---|---|---|---|---|---|---|---|"]
    for path in result_files():
        data = json.loads(path.read_text())
        model, _, units = data["model"].partition("@")
        env = data.get("env", ENV)
        eps = headline_eps(model)
        p = data["points"].get(f"{eps:g}")
        if p is None:
            continue
        full = {k: v for k, v in p.items() if isinstance(v, dict) and k not in ("worst", "noise", "fgsm")
                and not k.startswith("timed")}
        strongest = min(full, key=lambda k: full[k]["mean"])
        timed = {k: v for k, v in p.items() if isinstance(v, dict) and k.startswith("timed")}
        best_t = min(timed, key=lambda k: timed[k]["mean"]) if timed else None
        share = f" ({100 * timed[best_t]['attacked']:.0f}%)" if best_t and "attacked_means" in p else ""
        tcell = f"{best_t} {timed[best_t]['mean']:.1f}{share}" if best_t else "-"
        w, noise = p["worst"]["mean"], p["noise"]["mean"]
        if env != ENV:  # the figures are CartPole's; for the second environment: attack vs noise
            goal = f"(CartPole's targets only) loss vs clean: noise {p['clean'] - noise:.1f}, worst {p['clean'] - w:.1f}"
        elif "robust" in model:
            ok = w >= 400 and p["clean"] >= 490
            goal = f">= 400 under attack, clean >= 490: {'met' if ok else 'not met'}"
        else:
            ok = w < 100 and noise > 450
            goal = f"< 100 with noise > 450: {'met' if ok else 'not met'}"
        lines.append(f"| {model} | {env} | {eps:g} | {units or 'own'} | {p['clean']:.1f} | {noise:.1f} | {w:.1f} ({strongest} "
                     f"{full[strongest]['mean']:.1f}) | {tcell} | {goal} |")
    lines += ["", ("`worst` is the per-episode minimum over the full-time attacks (the adversary picks its attack "
                   "per episode); 'own' units: the policy's own state std, the default of `evaluate_policy`."), ""]
    for path in result_files():
        data = json.loads(path.read_text())
        pts = data["points"]
        if not pts:
            continue
        any_pt = next(iter(pts.values()))
        cols: list[str] = []
        for pt in pts.values():
            cols += [k for k in pt if isinstance(pt[k], dict) and k != "worst" and k not in cols]
        lines += [f"## {data['model']} on {data.get('env', ENV)} ({any_pt['episodes']} episodes per point)", "",
                  "| eps | clean | " + " | ".join(cols) + " | worst |", "|---" * (len(cols) + 3) + "|"]
        for eps in sorted(pts, key=float):
            p = pts[eps]
            cells = []
            for c in cols:
                if c not in p:
                    cells.append("-")
                    continue
                cell = f"{p[c]['mean']:.1f}"
                if c != "noise" and "attacked_means" in p:  # points measured before: no share shown
                    cell += f" ({100 * p[c]['attacked']:.0f}%)"
                cells.append(cell)
            lines.append(f"| {eps} | {p['clean']:.1f} | " + " | ".join(cells) + f" | {p['worst']['mean']:.1f} |")
        lines.append("")
    for path in sorted(RESULTS.glob("rl-speed-*.json")):
        d = json.loads(path.read_text())
        lines += [f"## Rollout speed, {d['model']} (1 CPU thread, {d['cpu']})", "",
                  "| setting | episodes | batched eps/s | gymnasium loop eps/s | speed-up |", "|---|---|---|---|---|"]
        for label in ("clean", "pgd"):
            s = d[label]
            lines.append(f"| {label} | {s['episodes']} | {s['batched_eps_per_s']:.2f} | {s['gym_loop_eps_per_s']:.2f} "
                         f"| {s['speedup']:.1f}x |")
        lines.append("")
    for path in sorted(RESULTS.glob("rl-probe-*.json")):
        d = json.loads(path.read_text())
        lines += [f"## Probe: {d['model']} at state:{d['eps']:g} ({d['episodes']} episodes, mean return; "
                  "`python benchmarks/rl.py probe --model {0} --eps {1:g} --episodes {2}{3}`)".format(
                      d["model"], d["eps"], d["episodes"],
                      "".join(f" --scale-from {k.split('_in_')[1][:-6]}" for k in d if "_in_" in k and "action1" in k)), "",
                  "| figure | value |", "|---|---|"]
        for k, v in d.items():
            if k in ("model", "eps", "episodes"):
                continue
            val = f"{v[1]:.1f} ({v[0]})" if isinstance(v, list) else f"{v:.3f}" if k.startswith("share") else f"{v:.1f}"
            lines.append(f"| {k} | {val} |")
        lines.append("")
    (RESULTS / "rl.md").write_text("\n".join(lines))
    print("\n".join(lines))


def card(args) -> None:
    """Write the policy's headline point (its zoo threat's eps, own units) from its curve file into
    its model card: mean return per setting and the share of steps whose action each attack changed."""
    from robustlab.models.zoo import weights_path

    eps = headline_eps(args.model)
    data = json.loads((RESULTS / f"rl-{args.model}.json").read_text())
    p = data["points"][f"{eps:g}"]
    per = {k: v for k, v in p.items() if isinstance(v, dict) and "mean" in v}
    path = Path(str(weights_path(args.model))).with_suffix(".json")
    c = json.loads(path.read_text())
    c[f"measured_state_{eps:g}_seeds_0_{p['episodes'] - 1}"] = {
        "own_units": {"clean": p["clean"], **{k: round(v["mean"], 1) for k, v in per.items()}},
        "share_of_steps_whose_action_changed": {k: round(v["attacked"], 3) for k, v in per.items()
                                                if "attacked" in v and k not in ("noise", "worst")}}
    for other in sorted(RESULTS.glob(f"rl-{args.model}@*.json")):  # the ball in another policy's units
        q = json.loads(other.read_text())["points"].get(f"{eps:g}")
        if q is not None:
            units = other.stem.split("@", 1)[1]
            c[f"measured_state_{eps:g}_seeds_0_{p['episodes'] - 1}"][f"units_of_{units}"] = {
                "clean": q["clean"], **{k: round(v["mean"], 1) for k, v in q.items() if isinstance(v, dict) and "mean" in v}}
    c["measured_by"] = f"python benchmarks/rl.py curves (see benchmarks/results/rl.md); python benchmarks/rl.py card --model {args.model}"
    path.write_text(json.dumps(c, indent=2) + "\n")
    print(json.dumps(c[f"measured_state_{eps:g}_seeds_0_{p['episodes'] - 1}"], indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["curves", "speed", "table", "probe", "card"])
    p.add_argument("--models", default="cartpole-dqn,cartpole-ppo")
    p.add_argument("--model", default="cartpole-dqn")
    p.add_argument("--scale-from", default=None, help="measure eps in this policy's state std")
    p.add_argument("--eps", default="0.1,0.2,0.3,0.4,0.5")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--pgd-episodes", type=int, default=10)
    p.add_argument("--speed-eps", type=float, default=0.5)
    p.add_argument("--timed", default="0.2", help="thresholds of the timed attacks, e.g. 0.2,0.6 (THRESHOLD:INNER "
                   "attacks with INNER, e.g. 0.1:learned:cartpole-ppo-adversary)")
    p.add_argument("--extra", default="", help="more attack names, e.g. learned:cartpole-ppo-adversary")
    args = p.parse_args()
    torch.set_num_threads(1)
    {"curves": curves, "speed": speed, "table": table, "probe": probe, "card": card}[args.what](args)


if __name__ == "__main__":
    main()
