"""Adversarial training: recipes, one resumable training loop, and a failure-mode monitor.

    from robustlab.defenses.training import train, TRADES, Piecewise
    res = train(model, (x, y), TRADES(LpBall("linf", 0.3), beta=1.0, steps=10, warmup=0.15),
                epochs=10, batch_size=100, lr=Piecewise(1e-3), seed=0,
                checkpoint="runs/trades.pt", val=(x_val, y_val))

The recipe contract (stable: certified training and noise augmentation plug in through it)
--------------------------------------------------------------------------------------------
A recipe is any object, by convention a small frozen dataclass, with

    loss(model, x, y, generator, progress) -> Tensor

- ``model``: the nn.Module being trained, in training mode; under DDP it is the
  DistributedDataParallel wrapper, so the recipe's final forward must go through ``model``
  (gradients are all-reduced on backward) and any inner computation that should not (an attack,
  a bound pass) uses ``unwrap(model)``. Use :func:`perturb` for attacks: it runs the attack loop
  of :mod:`robustlab.attacks.gradient` on the bare model in eval mode and restores it.
- ``x``: (B, ...) float inputs in [0, 1] on the training device; ``y``: (B,) int64 labels. B is
  the per-process share of the global batch.
- ``generator``: a torch.Generator on the device; draw ALL randomness from it (random starts,
  noise), never from the global RNG, so runs replay exactly and resume bit-identically.
- ``progress``: fraction of training done, in [0, 1), for schedules such as the eps ramp
  (:func:`ramp`: eps grows linearly over the first ``warmup`` fraction).
- returns a scalar tensor (the mean over the batch) with a graph to the parameters; ``train``
  calls ``backward`` and the optimiser step. It must not step the optimiser itself.

Optional: ``spec() -> str`` (the recipe's settings, kept in the checkpoint and the store: a
resume with other settings is refused) and a ``threat`` attribute (the default threat of the
per-epoch robust accuracy and of the monitor).

Recipes here: :class:`Standard`, :class:`PGDAT` (Madry et al. 2018), :class:`TRADES` (Zhang et
al. 2019), :class:`FastAT` (Wong et al. 2020), :class:`NFGSM` (de Jorge et al. 2022; both take
``checks`` on their step, Kim et al. 2021), :class:`GradAlign` (Andriushchenko & Flammarion 2020), :class:`GuidedAT`
(after Sriramanan et al. 2020), and :class:`ATTA` (Zheng et al. 2020: perturbations carried
across epochs; :mod:`.carried` states the extra ``memory`` / ``index`` arguments it takes).
``robustlab train`` is the command line (:mod:`.cli`);
``python -m robustlab.train`` the same under torchrun (DDP).
"""
from robustlab.defenses.training.carried import ATTA
from robustlab.defenses.training.loop import (
    Cyclic,
    Piecewise,
    TrainResult,
    data_order,
    evaluate_epoch,
    train,
)
from robustlab.defenses.training.monitor import EpochStats, Flag, Monitor
from robustlab.defenses.training.regularized import GradAlign, GuidedAT
from robustlab.defenses.training.recipes import (
    PGDAT,
    TRADES,
    NFGSM,
    FastAT,
    Recipe,
    Standard,
    perturb,
    ramp,
    scaled,
    unwrap,
)

__all__ = [
    "train", "TrainResult", "Piecewise", "Cyclic", "data_order", "evaluate_epoch",
    "Recipe", "Standard", "PGDAT", "ATTA", "TRADES", "FastAT", "NFGSM", "GradAlign", "GuidedAT", "perturb", "ramp", "scaled", "unwrap",
    "Monitor", "EpochStats", "Flag",
]
