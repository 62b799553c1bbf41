"""``python -m robustlab.train``: the training job as a plain module, for torchrun.

    torchrun --nproc_per_node 2 -m robustlab.train --recipe pgdat --data digits \\
        --arch digits-mlp --threat linf:0.1 --epochs 3 --batch-size 50 --out model.safetensors

Under torchrun (WORLD_SIZE > 1) it initialises torch.distributed (gloo on CPU, NCCL when
``--device cuda``), and ``train`` wraps the model in DistributedDataParallel; the options are
those of ``robustlab train``. Without torchrun it is the same job in one process.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch


def _parser() -> argparse.ArgumentParser:
    from robustlab.defenses.training.job import RECIPES

    ap = argparse.ArgumentParser(prog="python -m robustlab.train")
    ap.add_argument("--recipe", required=True, choices=RECIPES)
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--arch", default="mnist-cnn")
    ap.add_argument("--threat", default="linf:0.3")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", default="piecewise")
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--step-size", type=float, default=None)
    ap.add_argument("--beta", type=float, default=6.0)
    ap.add_argument("--alpha", type=float, default=None)
    ap.add_argument("--noise", type=float, default=2.0)
    ap.add_argument("--checks", type=int, default=0)
    ap.add_argument("--no-random-start", dest="random_start", action="store_false")
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--held-out", type=int, default=500)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--stop-on-overfit", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    return ap


def main(argv: list[str] | None = None) -> int:
    from robustlab.defenses.training.job import JobSpec, run_job

    args = vars(_parser().parse_args(argv))
    torch.set_num_threads(args.pop("threads"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        backend = "nccl" if args["device"].startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
        if args["device"] == "cuda":
            args["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        res = run_job(JobSpec(**args), on_epoch=lambda s, f: print(
            f"epoch {s.epoch}: loss {s.loss:.4f} clean {s.clean_acc} pgd {s.pgd_acc} fgsm {s.fgsm_acc} "
            f"{s.seconds:.1f}s" + "".join(f" FLAG {x.kind}" for x in f), flush=True)
            if (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0) else None)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            # Every rank past its last collective before the group goes: tearing gloo down while
            # a peer still has work in flight can abort a rank ("terminate called ...").
            try:
                torch.distributed.barrier()
            finally:
                torch.distributed.destroy_process_group()
    return 0 if res is not None else 1


if __name__ == "__main__":
    sys.exit(main())
