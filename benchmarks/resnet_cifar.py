"""A CIFAR-size ResNet-18 (He et al. 2016, the 3x3-stem CIFAR variant) for speed benchmarks.

Random weights are fine for timing; it lives in benchmarks/, not in the package.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


class _Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.short(x))


class ResNet18(nn.Module):
    """Input (N, 3, 32, 32) in [0, 1]; output (N, 10) logits. ``width`` 64 is the standard
    ResNet-18 (11.2M parameters); smaller widths keep CPU benchmarks short."""

    def __init__(self, width: int = 64, n_classes: int = 10) -> None:
        super().__init__()
        w = width
        self.norm = _Normalize()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        layers, cin = [], w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(self.stem(self.norm(x)))
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet18_cifar(width: int = 64, seed: int = 0) -> ResNet18:
    """A seeded random ResNet-18 in eval mode, BatchNorm statistics perturbed from their
    defaults so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = ResNet18(width)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(0.1 * torch.randn(mod.num_features, generator=g))
                mod.running_var.copy_(1.0 + 0.1 * torch.rand(mod.num_features, generator=g))
    return m.eval()
