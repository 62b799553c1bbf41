"""The computation graph bound propagation walks: a model turned into a list of nodes.

Supported layers: ``nn.Linear``, ``nn.Conv2d``, ``nn.ReLU``, ``nn.Flatten``, robustlab's
``Normalize``, ``nn.BatchNorm2d`` (eval statistics), ``nn.AvgPool2d``, ``nn.Identity``, nested
``nn.Sequential``, and ``Residual`` (below) for skip connections. Anything else raises a
ValueError naming the first unsupported layer by its path in the model.

A residual block is written as a ``Residual(body, shortcut=None)`` module computing
``body(x) + shortcut(x)`` (identity shortcut when None), e.g. a ResNet basic block::

    Residual(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)))
    followed by nn.ReLU()
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robustlab.models.layers import Normalize

AFFINE = (nn.Linear, nn.Conv2d, nn.Flatten, Normalize, nn.BatchNorm2d, nn.AvgPool2d)


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; ``shortcut=None`` is the identity. Both must keep the shape.

    Args:
        body: the residual branch (any supported layers, ``Residual`` included).
        shortcut: the skip branch (e.g. a 1x1 strided conv), or None for identity.
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(body, nn.Module):
            raise TypeError(f"body: expected an nn.Module, got {type(body).__name__}")
        if shortcut is not None and not isinstance(shortcut, nn.Module):
            raise TypeError(f"shortcut: expected an nn.Module or None, got {type(shortcut).__name__}")
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


@dataclass
class Node:
    """One operation. ``kind`` is "input", "affine", "relu" or "add"; ``inputs`` index earlier
    nodes; ``shape`` is the per-sample output shape (no batch dimension)."""

    kind: str
    inputs: list[int] = field(default_factory=list)
    module: nn.Module | None = None
    shape: tuple[int, ...] = ()


def build_graph(model: nn.Module, x: Tensor) -> list[Node]:
    """Nodes of ``model`` in topological order (node 0 is the input, the last node the output).

    ``x`` (N, *input shape) is run once to record every node's shape. Raises ValueError naming
    the first unsupported layer, and if ``model`` is in training mode with BatchNorm inside.
    """
    nodes = [Node("input", shape=tuple(x.shape[1:]))]

    def add(kind: str, inputs: list[int], module: nn.Module | None = None) -> int:
        nodes.append(Node(kind, inputs, module))
        return len(nodes) - 1

    def walk(m: nn.Module, inp: int, path: str) -> int:
        if isinstance(m, nn.Sequential):
            for name, child in m.named_children():
                inp = walk(child, inp, f"{path}.{name}" if path else name)
            return inp
        if isinstance(m, Residual):
            b = walk(m.body, inp, f"{path}.body" if path else "body")
            s = inp if m.shortcut is None else walk(m.shortcut, inp, f"{path}.shortcut" if path else "shortcut")
            return add("add", [b, s])
        if isinstance(m, nn.Identity):
            return inp
        if isinstance(m, nn.ReLU):
            return add("relu", [inp], m)
        if isinstance(m, AFFINE):
            if isinstance(m, nn.BatchNorm2d) and m.training:
                raise ValueError(f"model: BatchNorm layer {path or type(m).__name__!r} is in training mode; "
                                 "bounds hold for eval mode (call model.eval())")
            if isinstance(m, nn.AvgPool2d) and (m.ceil_mode or (not m.count_include_pad and m.padding != 0)
                                                or m.divisor_override is not None):
                raise ValueError(f"model: AvgPool2d {path!r} needs ceil_mode=False and count_include_pad=True")
            return add("affine", [inp], m)
        raise ValueError(f"model: unsupported layer {path or '<root>'!r} ({type(m).__name__}); bound propagation "
                         "supports Linear, Conv2d, ReLU, Flatten, Normalize, BatchNorm2d, AvgPool2d, "
                         "Identity, Sequential and Residual")

    walk(model, 0, "")
    with torch.no_grad():
        values = [x[:1]]
        for node in nodes[1:]:
            if node.kind == "add":
                v = values[node.inputs[0]] + values[node.inputs[1]]
            else:
                v = node.module(values[node.inputs[0]])  # type: ignore[misc]
            node.shape = tuple(v.shape[1:])
            values.append(v)
    return nodes
