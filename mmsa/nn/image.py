"""Image encoder: a ResNet-18-class CNN (BasicBlocks, [2, 2, 2, 2]) over the depiction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convolutions with a residual connection."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + self.shortcut(x))


class ImageEncoder(nn.Module):
    """ResNet-18 layout ([2, 2, 2, 2] basic blocks) with configurable (narrow) widths.

    Args:
        in_channels: image channels (``ImageFeaturizer.shape[0]``).
        widths: channels of the four stages, e.g. (16, 32, 64, 128).
        out_dim: width of the molecule embedding.

    ``forward(images)`` takes uint8 or float ``[B, C, H, W]`` (uint8 is scaled to [0, 1]) and
    returns ``[B, out_dim]``. As in ResNet-18 the stem (here a 5x5 stride-2 convolution, 7x7 in
    the original, since depictions are 32-64 px rather than 224 px) is followed by a stride-2
    max-pool, so the four stages run at 1/4, 1/8, 1/16 and 1/32 of the image size.
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32, 64, 128),
                 out_dim: int = 128, blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        widths = list(widths)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 5, 2, 2, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers = []
        c_in = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(c_in, width, stride=2 if (i > 0 and j == 0) else 1))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.out = nn.Linear(c_in, out_dim)
        self.out_dim = out_dim

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        h = self.layers(self.stem(x))
        return self.out(h.mean(dim=(2, 3)))
