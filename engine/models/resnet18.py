"""ResNet-18 for small images (He et al., 2016, in the CIFAR form used across continual-learning code:
a 3x3 stride-1 stem, no max-pool, four stages of two basic blocks, global average pooling). ``nf`` is
the first stage's width: 64 is the standard network (about 11.2 M parameters), 20 the reduced one of
GEM, A-GEM and Mammoth (``resnet18_reduced``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.base import Backbone, GlobalAvgPool
from engine.core.hparams import HParam


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:  # a 1x1 projection where the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(Backbone):
    name = "resnet18"
    title = "ResNet-18 (64-512 wide, for 32x32 inputs)"
    kind = "image"
    hparams = {"nf": HParam(int, 64, "width of the first stage (the stages are nf, 2nf, 4nf, 8nf)", low=1, high=512)}

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, nf: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], nf, 3, stride=1, padding=1, bias=False),
                                   nn.BatchNorm2d(nf), nn.ReLU()]
        width = nf
        for k, stride in enumerate((1, 2, 2, 2)):
            planes = nf * 2 ** k
            layers += [BasicBlock(width, planes, stride), BasicBlock(planes, planes, 1)]
            width = planes
        self.features = nn.Sequential(*layers, GlobalAvgPool())
        self.head = nn.Linear(width, n_classes)
