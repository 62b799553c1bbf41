"""``robustlab train``: a rich progress bar per epoch and a table row per epoch.

    robustlab train --recipe trades --data mnist --arch mnist-cnn --threat linf:0.3 --epochs 8 \\
        --out model.safetensors [--store runs.db] [--resume]
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


COLUMNS = ("epoch", "loss", "clean", "PGD-10", "FGSM", "seconds", "lr", "flags")
WIDTHS = (5, 8, 7, 7, 7, 8, 9, 0)


def _line(cells: tuple[str, ...]) -> str:
    return "  ".join(c.rjust(w) if w else c for c, w in zip(cells, WIDTHS))


def _table_row(stats, flags) -> tuple[str, ...]:
    """One epoch as table cells; accuracies on the held-out slice."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    flag = "; ".join(f.kind for f in flags) or ""
    return (str(stats.epoch), f"{stats.loss:.4f}", pct(stats.clean_acc), pct(stats.pgd_acc), pct(stats.fgsm_acc),
            f"{stats.seconds:.1f}", f"{stats.lr:.2e}", flag)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        recipe: str = typer.Option(..., help="standard, pgdat, trades, fast, nfgsm or atta"),
        data: str = typer.Option("mnist", help="A shipped dataset (mnist, digits, ...)"),
        arch: str = typer.Option("mnist-cnn", help="mnist-cnn or digits-mlp"),
        threat: str = typer.Option("linf:0.3", help="Threat trained against and measured, e.g. linf:0.3"),
        epochs: int = typer.Option(10, help="Passes over the training data"),
        out: Path = typer.Option(..., help="Output weights (.safetensors); the card goes beside it"),
        batch_size: int = typer.Option(100, "--batch-size"),
        lr: float = typer.Option(1e-3, help="Learning rate (peak of the cyclic schedule)"),
        schedule: str = typer.Option("piecewise", help="piecewise (x0.1 at 70% and 90%) or cyclic"),
        optimizer: str = typer.Option("adam", help="adam or sgd"),
        steps: Optional[int] = typer.Option(None, help="Attack steps per batch (pgdat, trades: 10; atta: 1)"),
        step_size: Optional[float] = typer.Option(None, "--step-size", help="Attack step (default 2.5 eps / steps; atta: eps / 3)"),
        beta: float = typer.Option(6.0, help="TRADES weight of the KL term"),
        alpha: Optional[float] = typer.Option(None, help="Fast AT step (default 1.25 eps; nfgsm: eps)"),
        noise: float = typer.Option(2.0, help="nfgsm: noise radius in multiples of eps"),
        checks: int = typer.Option(0, help="fast, nfgsm: points checked on the step, cut at the first that fools (0: off)"),
        random_start: bool = typer.Option(True, "--random-start/--no-random-start"),
        warmup: float = typer.Option(0.0, help="Fraction of training over which eps ramps up from 0"),
        seed: int = typer.Option(0),
        n: Optional[int] = typer.Option(None, help="Use only the first N training points"),
        held_out: int = typer.Option(500, "--held-out", help="Last training points kept for per-epoch figures"),
        checkpoint_every: int = typer.Option(100, "--checkpoint-every", help="Steps between checkpoints"),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT.ckpt"),
        store: Optional[Path] = typer.Option(None, "--store", help="SQLite result store for the epoch rows"),
        stop_on_overfit: bool = typer.Option(False, "--stop-on-overfit",
                                             help="Stop at catastrophic overfitting, roll back to the best epoch"),
        threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
        device: str = typer.Option("cpu"),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar"),
    ) -> None:
        """Train a model with an adversarial-training recipe (checkpointed, resumable)."""
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        import torch

        from robustlab.cli_tables import console, fail
        from robustlab.defenses.training.job import JobSpec, run_job

        if threads is not None:
            torch.set_num_threads(threads)
        spec = JobSpec(recipe=recipe, data=data, arch=arch, out=out, threat=threat, epochs=epochs,
                       batch_size=batch_size, lr=lr, schedule=schedule, optimizer=optimizer, steps=steps,
                       step_size=step_size, beta=beta, alpha=alpha, noise=noise, checks=checks, random_start=random_start, warmup=warmup,
                       seed=seed, n=n, held_out=held_out, checkpoint_every=checkpoint_every, resume=resume,
                       store=store, stop_on_overfit=stop_on_overfit, device=device)
        progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                            console=console, disable=quiet, transient=True)
        task = {"id": None}

        def on_start(n_epochs: int, spe: int) -> None:
            task["id"] = progress.add_task("train", total=spe, epoch=1, loss=0.0)
            progress.console.print(f"[bold]{escape(_line(COLUMNS))}[/]")

        def on_step(epoch: int, step: int, spe: int, loss: float) -> None:
            progress.update(task["id"], completed=step, epoch=epoch + 1, loss=loss)

        def on_epoch(stats, flags) -> None:
            progress.console.print(escape(_line(_table_row(stats, flags))), highlight=False)
            for f in flags:
                progress.console.print(f"[bold yellow]flag[/] epoch {f.epoch} {f.kind}: {escape(f.message)}")
            if task["id"] is not None:
                progress.reset(task["id"])

        try:
            with progress:
                res = run_job(spec, on_step=on_step, on_epoch=on_epoch, on_start=on_start)
        except (ValueError, TypeError) as e:
            fail(str(e))
        if res.resumed_at is not None:
            console.print(f"resumed at epoch {res.resumed_at[0] + 1}, step {res.resumed_at[1]}")
        if res.stopped:
            console.print(f"[bold yellow]stopped[/] by the monitor; weights rolled back to epoch {res.best_epoch}")
        console.print(f"wrote {out} ({res.seconds:.0f} s of training, {res.cpu_seconds:.0f} CPU s)")
