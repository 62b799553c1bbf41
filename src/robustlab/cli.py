"""The command line: thin; parses, calls the library, prints with rich.

    robustlab evaluate --model mnist-cnn-at --data mnist --n 1000 --threat linf:0.3 --store runs.db
    robustlab models
    robustlab runs runs.db
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="robustlab: attack, defend and honestly evaluate models.")
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr, then exit (2 for bad arguments)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load_model(spec: str, weights: Optional[Path], device: str):
    import robustlab as rl

    if spec.endswith(".py"):
        return rl.models.load_from_file(spec, weights, device=device)
    if weights is not None:
        fail("weights: --weights goes with a builder file (--model path/to/model.py), not a shipped model name")
    return rl.models.load(spec, device=device)


@app.command()
def evaluate(
    model: str = typer.Option(..., help="A shipped model name (see `robustlab models`) or a builder file model.py"),
    weights: Optional[Path] = typer.Option(None, help="safetensors weights for a builder file"),
    data: str = typer.Option("mnist", help="Dataset: mnist or digits"),
    split: str = typer.Option("test", help="train or test"),
    n: Optional[int] = typer.Option(None, help="Number of points from --start [default: 1000, or what the split has]"),
    start: int = typer.Option(0, help="Index of the first point"),
    threat: str = typer.Option("linf:0.3", help="NORM:EPS, e.g. linf:0.3, l2:1.5, linf:8/255"),
    attacks: str = typer.Option("pgd", help="Comma-separated attacks: fgsm, pgd, pgd-100, pgd-40x5, pgd-margin-100"),
    batch_size: int = typer.Option(500, help="Points per batch (each finished batch is stored)"),
    seed: int = typer.Option(0, help="Base seed of the attacks"),
    store: Optional[Path] = typer.Option(None, help="SQLite result store; makes the run resumable"),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
) -> None:
    """Clean and robust accuracy of a model; every per-sample outcome goes to the store."""
    import torch

    import robustlab as rl
    from robustlab.validation import probe_model

    try:
        threat_obj = rl.LpBall.parse(threat)
        if n is not None and n <= 0:
            fail(f"n: expected a positive number of points, got {n}")
        if n is None:
            size = rl.data.info(data).sizes.get(split, 0)
            n = max(1, min(1000, size - start))
        x, y = rl.data.load(data, split=split, n=n, start=start)
        net = _load_model(model, weights, device)
        attack_list = rl.evaluation.runner.resolve_attacks(attacks, threat_obj)
        x, y = x.to(device), y.to(device)
        probe_model(net, x[:1])
    except (ValueError, TypeError, FileNotFoundError) as e:
        fail(str(e))
        return
    except RuntimeError as e:
        fail(f"device: {e}" if "device" in str(e).lower() or "cuda" in str(e).lower() else str(e))
        return

    data_desc = {"name": data, "split": split, "start": start, "n": int(x.shape[0]), "model": model}
    console.print(f"[bold]robustlab evaluate[/] model={model} data={data}/{split}[{start}:{start + x.shape[0]}] "
                  f"threat={threat_obj} attacks={', '.join(rl.evaluation.runner.attack_name(a) for a in attack_list)}",
                  highlight=False)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False) as bar:
        task = bar.add_task("evaluating", total=int(x.shape[0]))
        try:
            report = rl.evaluate(net, x, y, threat_obj, attacks=attack_list, batch_size=batch_size, seed=seed,
                                 store=store, data=data_desc,
                                 progress=lambda done, total: bar.update(task, completed=done))
        except (ValueError, TypeError) as e:
            bar.stop()
            fail(str(e))
            return
        except KeyboardInterrupt:
            bar.stop()
            msg = "interrupted"
            if store is not None:
                msg += f"; finished batches are kept in {store}: rerun the same command to resume"
            err.print(msg, highlight=False)
            raise typer.Exit(130) from None
    _print_report(report, store)


def _print_report(report, store: Optional[Path]) -> None:
    t = Table(title=f"{report.n} points, threat {report.threat}", title_justify="left")
    t.add_column("stage")
    t.add_column("accuracy", justify="right")
    t.add_column("broken", justify="right")
    t.add_column("attacked", justify="right")
    t.add_column("forward", justify="right")
    t.add_column("backward", justify="right")
    t.add_column("seconds", justify="right")
    t.add_row("clean", f"{100 * report.clean_accuracy:.2f}%", "", "", "", "", "")
    for s in report.attacks:
        t.add_row(s.name, f"{100 * s.robust_accuracy:.2f}%", str(s.broken), str(s.attacked),
                  f"{s.forward_calls:,}", f"{s.backward_calls:,}", f"{s.seconds:.1f}")
    t.add_row("[bold]robust[/]", f"[bold]{100 * report.robust_accuracy:.2f}%[/]", "", "",
              f"{report.forward_calls:,}", f"{report.backward_calls:,}", f"{report.seconds:.1f}")
    console.print(t)
    tail = f"wall time {report.seconds:.1f}s"
    if report.run_id:
        tail += f"; run {report.run_id} stored in {store}"
        if report.resumed_points:
            tail += f" (resumed: {report.resumed_points} points were already stored)"
    console.print(tail, highlight=False)
    console.print(f"clean accuracy {100 * report.clean_accuracy:.2f}%, robust accuracy "
                  f"{100 * report.robust_accuracy:.2f}%", highlight=False)


@app.command()
def models() -> None:
    """List the shipped models with their model cards' figures."""
    import robustlab as rl
    from robustlab.models.zoo import ZOO

    t = Table()
    for c in ("name", "dataset", "description", "clean acc", "PGD-40x5 Linf 0.3 (first 1000)"):
        t.add_column(c)
    for name in rl.models.names():
        card = rl.models.card(name)
        clean = card.get("clean_accuracy_test_10k")
        rob = card.get("pgd40x5_linf0.3_robust_accuracy_first1000")
        t.add_row(name, ZOO[name].dataset, ZOO[name].description,
                  f"{100 * clean:.2f}%" if clean is not None else "-", f"{100 * rob:.1f}%" if rob is not None else "-")
    console.print(t)


@app.command()
def runs(store: Path = typer.Argument(..., help="SQLite result store")) -> None:
    """List the runs in a result store."""
    import datetime

    from robustlab.evaluation.store import Store

    if not store.is_file():
        fail(f"store: no such file {str(store)!r}")
    try:
        with Store(store) as db:
            rows = db.runs()
    except ValueError as e:
        fail(str(e))
        return
    t = Table()
    for c in ("run", "created", "status", "model", "data", "threat", "attacks", "points", "clean", "robust"):
        t.add_column(c)
    for r in rows:
        s = r.summary or {}
        t.add_row(r.run_id, datetime.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"), r.status,
                  str(r.data.get("model", r.model_hash[:12])),
                  f"{r.data.get('name', '?')}/{r.data.get('split', '?')}", r.threat, ", ".join(r.attacks),
                  f"{r.points_done}/{r.n}",
                  f"{100 * s['clean_accuracy']:.2f}%" if "clean_accuracy" in s else "-",
                  f"{100 * s['robust_accuracy']:.2f}%" if "robust_accuracy" in s else "-")
    console.print(t)


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
        err.print(f"[bold red]error:[/] {e.format_message()}{hint}", highlight=False, soft_wrap=True)
        return 2 if getattr(e, "exit_code", 2) in (1, 2) else int(e.exit_code)
    except typer.Abort:
        err.print("aborted; stored batches are kept, rerun the same command to resume", highlight=False)
        return 130
    except typer.Exit as e:
        return e.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
