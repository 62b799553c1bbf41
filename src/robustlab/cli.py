"""The command line: thin; parses, calls the library, prints with rich.

    robustlab evaluate --model mnist-cnn-at --data mnist --n 1000 --threat linf:0.3 --store runs.db
    robustlab evaluate --config runs-3f2a9c1b7d0e.toml --min-robust-acc 0.8     # reproduce, and gate
    robustlab models
    robustlab runs runs.db
    robustlab report RUN --store runs.db --out report.html
    robustlab leaderboard runs.db --out leaderboard.html
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from robustlab.cli_models import (
    check_device,
    input_shape,
    load_access_model,
    load_model,
    n_classes_of_data,
    probe_endpoint,
)
from robustlab.cli_tables import console, err, fail, print_diagnostics, print_report  # noqa: F401

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="robustlab: attack, defend and honestly evaluate models.")


def _attack_help() -> str:
    from robustlab.evaluation.registry import names

    return ", ".join(names())


def _certifier_help() -> str:
    from robustlab.evaluation.registry import CERTIFIERS, names

    return ", ".join(names(CERTIFIERS))


@app.command()
def evaluate(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="A shipped model name (see `robustlab models`) or a builder file model.py"),
    weights: Optional[Path] = typer.Option(None, help="safetensors weights for a builder file"),
    untrained: bool = typer.Option(False, "--untrained", help="Allow a builder file without --weights (random weights, on purpose)"),
    data: str = typer.Option("mnist", help="A shipped dataset (mnist, digits, fashion-mnist, ...) or your own: "
                             "an .npz (x, y), a folder of class subfolders of images, a CIFAR-10 binary folder"),
    split: str = typer.Option("test", help="train or test"),
    n: Optional[int] = typer.Option(None, help="Number of points from --start [default: 1000, or what the split has]"),
    start: int = typer.Option(0, help="Index of the first point"),
    threat: str = typer.Option("linf:0.3", help="The threat's spec: linf:0.3, l2:1.5, linf:8/255, ... (db:-30 for audio, "
                               "words:0.2,sim:0.8 for text where installed)"),
    attacks: str = typer.Option("pgd", help="Comma-separated attacks or ensembles: " + _attack_help()),
    certify: Optional[str] = typer.Option(None, "--certify", help="Certifiers run before the attacks: " + _certifier_help()),
    batch_size: int = typer.Option(500, help="Points per batch (each finished batch is stored)"),
    seed: int = typer.Option(0, help="Base seed of the attacks"),
    store: Optional[Path] = typer.Option(None, help="SQLite result store; makes the run resumable"),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config to reproduce (see examples/eval.toml); options given here override it"),
    save_config: Optional[Path] = typer.Option(None, "--save-config", help="Where to write the config this run used [default: next to the store, else ./robustlab-eval-<hash>.toml]"),
    diagnostics: str = typer.Option("fast", "--diagnostics", help="Gradient-masking checks: fast (budgeted to 25% of the "
                                    "evaluation's passes), full (every check on up to 100 points) or off"),
    no_diagnostics: bool = typer.Option(False, "--no-diagnostics", help="Same as --diagnostics off"),
    min_robust_acc: Optional[float] = typer.Option(None, "--min-robust-acc", help="Gate: exit 1 when robust accuracy is below this fraction (e.g. 0.8)"),
    workers: int = typer.Option(0, help="Shard the batches over N Ray workers (a local Ray instance unless --ray); needs --store"),
    ray: Optional[str] = typer.Option(None, "--ray", help="Address of a running Ray cluster to shard over (e.g. auto, ray://host:10001)"),
    access: str = typer.Option("white", "--access", help="What the attacks may see: white (the nn.Module), score or label. "
                               "An http(s):// --model (a JSON endpoint, see `robustlab serve`) needs score or label"),
    env: Optional[str] = typer.Option(None, "--env", help="A gymnasium id (CartPole-v1): evaluate a policy over seeded "
                                      "episodes instead of a classifier over data points (--threat linf:EPS or "
                                      "state:EPS is then in standard deviations of each observation)"),
    episodes: int = typer.Option(100, help="Episodes for --env (episode i starts from reset(seed=SEED+i))"),
    min_return: Optional[float] = typer.Option(None, "--min-return", help="Gate for --env: exit 1 when the worst "
                                               "attack's mean return is below this"),
    precision: str = typer.Option("fp32", "--precision", help="Precision the attacks search in: fp32, bf16 or fp16 "
                                  "(autocast, ~2x faster where supported); success is always decided in full precision"),
    timeout: float = typer.Option(10.0, "--timeout", help="For an http(s):// --model: seconds to wait for each answer"),
    retries: int = typer.Option(3, "--retries", help="For an http(s):// --model: further attempts after a failed "
                                "request (connection error, timeout, 408, 429, 5xx), with exponential backoff"),
) -> None:
    """Clean and robust accuracy of a model; every per-sample outcome goes to the store.

    With --env, the return of a policy under observation attacks, per episode."""
    import robustlab as rl

    if env is not None:
        if not model:
            fail("model: --env needs --model (a shipped policy such as cartpole-dqn, or a builder file)")
        if episodes < 1:
            fail(f"episodes: expected a positive number, got {episodes}")
        from robustlab.evaluation.policy_cli import run_policy_evaluation

        thr = threat
        if ctx.get_parameter_source("threat").name != "COMMANDLINE":  # the zoo entry's own budget
            from robustlab.models.zoo import ZOO

            thr = (ZOO[model].threat if model in ZOO and ZOO[model].threat else threat)
        try:
            code = run_policy_evaluation(console, env, model, thr, attacks, episodes=episodes, seed=seed,
                                         store=store, min_return=min_return)
        except (ValueError, TypeError) as e:
            fail(str(e))
            return
        raise typer.Exit(code)
    from robustlab.evaluation.config import EvalConfig, default_config_path, load_config
    from robustlab.evaluation.config import save_config as write_config
    from robustlab.validation import probe_model

    try:
        cfg = _merge_config(ctx, config, {
            "model": model, "weights": None if weights is None else str(weights), "device": device, "data": data,
            "split": split, "start": start, "n": n, "threat": threat, "attacks": attacks, "certify": certify,
            "batch_size": batch_size,
            "seed": seed, "diagnostics": "off" if no_diagnostics else diagnostics, "min_robust_acc": min_robust_acc,
            "store": None if store is None else str(store), "workers": workers, "ray": ray, "access": access,
            "precision": precision, "timeout": timeout, "retries": retries},
            load_config, EvalConfig)
    except ValueError as e:
        fail(str(e))
        return
    model, data, split, n, start, threat, attacks = cfg.model, cfg.data, cfg.split, cfg.n, cfg.start, cfg.threat, cfg.attacks
    weights = None if cfg.weights is None else Path(cfg.weights)
    store = None if cfg.store is None else Path(cfg.store)
    batch_size, seed, device, diagnostics = cfg.batch_size, cfg.seed, cfg.device, cfg.diagnostics
    min_robust_acc, workers, ray, access = cfg.min_robust_acc, cfg.workers, cfg.ray, cfg.access
    precision, certify, timeout, retries = cfg.precision, cfg.certify, cfg.timeout, cfg.retries
    try:
        check_device(device)
        threat_obj = rl.threats.parse_threat(threat)
        if n is not None and n <= 0:
            fail(f"n: expected a positive number of points, got {n}")
        if n is None:
            size = rl.data.size(data, split)
            n = max(1, min(1000, size - start))
            cfg.n = n
        if (workers or ray) and store is None:
            fail("store: --workers/--ray need --store (the shards meet in the result store)")
        x, y = rl.data.load(data, split=split, n=n, start=start)
        tensor_x = isinstance(x, rl.evaluation.runner.Tensor)
        net = load_access_model(model, weights, device, access, x[:1].to(device) if tensor_x else x[:1], untrained,
                                 http={"timeout": timeout, "retries": retries, "n_classes": n_classes_of_data(data, y)})
        attack_list = rl.evaluation.runner.resolve_attacks(attacks, threat_obj)  # ensembles: a row per attack
        cert_list = rl.evaluation.runner.resolve_certifiers(certify)
        if tensor_x:
            x = x.to(device)
        y = y.to(device)
        if access == "white" and tensor_x:
            probe_model(net, x[:2])
        elif model.startswith(("http://", "https://")):
            probe_endpoint(net, x[:1])
        target = save_config if save_config is not None else default_config_path(cfg)
        cfg_path = write_config(cfg, target) if target is not None else None
    except typer.Exit:
        raise
    except (ValueError, TypeError, FileNotFoundError) as e:
        fail(str(e))
        return
    except RuntimeError as e:
        fail(f"device: {e}" if "device" in str(e).lower() or "cuda" in str(e).lower() else str(e))
        return

    npts = len(x) if not tensor_x else int(x.shape[0])
    data_desc = {"name": data, "split": split, "start": start, "n": npts, "model": model,
                 "config": cfg.to_dict(), "config_file": None if cfg_path is None else str(cfg_path)}
    console.print(f"[bold]robustlab evaluate[/] model={escape(model)} data={escape(data)}/{escape(split)}"
                  f"\\[{start}:{start + npts}] threat={escape(threat_obj.spec())} "
                  f"attacks={escape(', '.join(rl.evaluation.runner.attack_name(a) for a in attack_list))}"
                  + (f" certify={escape(certify)}" if certify else "")
                  + ("" if precision == "fp32" else f" precision={precision} (success decided in fp32)"),
                  highlight=False)
    if cfg_path is not None:
        console.print(f"config written to {escape(str(cfg_path))} (reproduce: robustlab evaluate --config "
                      f"{escape(str(cfg_path))})", highlight=False)
    views = ["naive", "adaptive"] if callable(getattr(net, "naive_view", None)) else ["adaptive"]
    for view in views:
        if len(views) > 1:
            console.print("[bold]" + ("non-adaptive: attacks on the bare model, transferred to the defense"
                                      if view == "naive" else "adaptive: attacks on the defense's attack view") + "[/]",
                          highlight=False)
        report = _run_evaluation(rl, net, x, y, threat_obj, attack_list, cert_list, batch_size, seed, store, data_desc,
                                 diagnostics if view == "adaptive" else False, precision, view, workers, ray, npts)
        print_report(console, report, store)
    print_diagnostics(console, report.diagnostics)
    if min_robust_acc is not None:
        ok = report.robust_accuracy >= min_robust_acc
        line = (f"gate {'PASS' if ok else 'FAIL'}: robust accuracy {100 * report.robust_accuracy:.2f}% "
                f"{'>=' if ok else '<'} required {100 * min_robust_acc:.2f}% ({escape(model)}, {threat_obj}, "
                f"{report.n} points)")
        console.print(f"[bold {'green' if ok else 'red'}]{line}[/]", highlight=False, soft_wrap=True)
        if not ok:
            raise typer.Exit(1)


def _run_evaluation(rl, net, x, y, threat_obj, attack_list, cert_list, batch_size, seed, store, data_desc, diagnostics,
                    precision, view, workers, ray, npts):
    """One evaluation with a progress bar; errors become one line (exit 2 for bad input, 1 for a
    failed or unsound run, 130 when interrupted)."""
    from robustlab.evaluation.runner import EvaluationFailed, UnsoundCertificate

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False) as bar:
        task = bar.add_task("evaluating" if view == "adaptive" else "non-adaptive", total=npts)

        phase = ["evaluating" if view == "adaptive" else "non-adaptive"]
        shown = [0.0]

        def tick(done: int, total: int) -> None:
            last = done >= total and diagnostics
            phase[0] = "diagnostics" if last else phase[0]
            bar.update(task, completed=done, description=phase[0])

        def step(attack: str, calls: int) -> None:  # within a batch: movement per forward pass
            now = time.monotonic()
            if now - shown[0] >= 0.25:
                shown[0] = now
                bar.update(task, description=f"{phase[0]} · {escape(attack)}: {calls:,} passes")

        try:
            if workers or ray:
                from robustlab.evaluation.distributed import evaluate_distributed

                return evaluate_distributed(net, x, y, threat_obj, attack_list, store=store,
                                            workers=max(workers, 1), address=ray, batch_size=batch_size,
                                            seed=seed, data=data_desc, progress=tick, diagnostics=diagnostics,
                                            precision=precision, certifiers=cert_list, view=view)
            return rl.evaluate(net, x, y, threat_obj, attacks=attack_list, certifiers=cert_list, batch_size=batch_size,
                               seed=seed, store=store, data=data_desc, progress=tick, diagnostics=diagnostics,
                               precision=precision, view=view, on_step=step)
        except (ValueError, TypeError) as e:
            bar.stop()
            fail(str(e))
        except (EvaluationFailed, UnsoundCertificate) as e:
            bar.stop()
            fail(str(e), code=1)
        except KeyboardInterrupt:
            bar.stop()
            msg = "interrupted"
            if store is not None:
                msg += f"; finished batches are kept in {store}: rerun the same command to resume"
            err.print(escape(msg), highlight=False)
            raise typer.Exit(130) from None


def _merge_config(ctx: typer.Context, path: Optional[Path], cli: dict, load_config, EvalConfig):
    """The run's settings: the --config file's, overridden by options given on the command line."""
    values = dict(cli)
    if path is not None:
        base = load_config(path).to_dict()
        for k, v in base.items():
            source = ctx.get_parameter_source(k)  # typer vendors click: compare by name, not by class
            if source is None or source.name != "COMMANDLINE":
                values[k] = v
    if not values.get("model"):
        raise ValueError("Missing option '--model' (or a --config file with a [model] name)")

    # Paths absolute, so the stored config means the same thing from any working folder.
    for k in ("weights", "store"):
        if values.get(k):
            values[k] = os.path.abspath(values[k])
    if str(values["model"]).endswith(".py"):
        values["model"] = os.path.abspath(values["model"])
    return EvalConfig(**values)


@app.command()
def serve(
    model: str = typer.Option(..., help="A shipped model name or a builder file model.py"),
    weights: Optional[Path] = typer.Option(None, help="safetensors weights for a builder file"),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, help="TCP port"),
    access: str = typer.Option("score", help="score (answers scores or labels) or label (labels only)"),
    device: str = typer.Option("cpu", help="cpu, cuda, ..."),
) -> None:
    """Serve a model as a JSON endpoint at http://HOST:PORT/predict (for black-box evaluation)."""
    from robustlab.models.serve import ModelServer

    if not 0 <= port <= 65535:
        fail(f"port: expected a TCP port in 0..65535, got {port}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: binding {escape(host)} exposes the model beyond this machine; anyone who can reach "
                  "the port can query it", highlight=False)
    try:
        net = load_model(model, weights, device)
        shape = input_shape(model)
        server = ModelServer(net, host=host, port=port, access=access, input_shape=shape)
    except (ValueError, TypeError, FileNotFoundError, OSError, OverflowError) as e:
        fail(str(e))
        return
    console.print(f"serving {escape(model)} ({access} access) at {server.url}; Ctrl-C to stop", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@app.command()
def models() -> None:
    """List the shipped models with their model cards' figures."""
    import robustlab as rl
    from robustlab.models.zoo import ZOO

    t = Table()
    for c in ("name", "data", "threat", "description", "clean"):
        t.add_column(c)
    for name in rl.models.names():
        card = rl.models.card(name)
        clean = next((card[k] for k in ("clean_accuracy_test_10k", "clean_accuracy", "test_accuracy", "clean")
                      if isinstance(card.get(k), (int, float))), None)
        t.add_row(name, ZOO[name].dataset, ZOO[name].threat or "", escape(ZOO[name].description),
                  f"{100 * clean:.2f}%" if clean is not None and clean <= 1 else "-")
    console.print(t)


# Commands that live with their own area (``robustlab train`` with the training loop, ...):
# each module defines ``register(app)``; adding one is one line here.
COMMAND_MODULES: list[str] = ["robustlab.cli_store", "robustlab.defenses.training.cli"]


def _register_plugins() -> None:
    import importlib

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(app)


_register_plugins()


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: bad arguments get one line on stderr and exit code 2."""
    from typer.exceptions import TyperException

    try:
        rv = app(args=argv, standalone_mode=False, prog_name="robustlab")
    except TyperException as e:  # usage errors: unknown option, bad value, missing argument
        if not e.format_message().strip():  # bare `robustlab`: help was printed
            return 0
        ctx = getattr(e, "ctx", None)
        hint = f" (see 'robustlab {ctx.info_name} --help')" if ctx is not None and ctx.info_name != "robustlab" else ""
        err.print(f"[bold red]error:[/] {escape(e.format_message() + hint)}", highlight=False, soft_wrap=True)
        return 2 if getattr(e, "exit_code", 2) in (1, 2) else int(e.exit_code)
    except typer.Abort:
        err.print("aborted; stored batches are kept, rerun the same command to resume", highlight=False)
        return 130
    except typer.Exit as e:
        return e.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
