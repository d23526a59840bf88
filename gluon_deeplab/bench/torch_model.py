"""DeepLabV3-ResNet50 in plain PyTorch, laid out like torchvision's (ResNet-v1, ASPP 6/12/18
at OS 16 or 12/24/36 at OS 8): the PyTorch peer of ``scripts/bench.py --peer torch``.

Run as a script by peer_torch.py, in the interpreter ``TORCH_PYTHON`` names (an environment
with torch and numpy only: gluoncv refuses to import next to torch 2). It imports nothing from
the package.
"""

from __future__ import annotations

import json
import sys
import time
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1
             ) -> nn.Sequential:
    padding = 0 if kernel == 1 else dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False),
                         nn.BatchNorm2d(cout))


class Bottleneck(nn.Module):
    """ResNet-v1 bottleneck: conv-BN-ReLU x 2, conv-BN, + identity, ReLU."""

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 down: nn.Module = None):
        super().__init__()
        self.conv1 = _conv_bn(cin, planes, 1)
        self.conv2 = _conv_bn(planes, planes, 3, stride, dilation)
        self.conv3 = _conv_bn(planes, planes * 4, 1)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return F.relu(self.conv3(x) + identity)


def _stage(cin: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    down = None
    if stride != 1 or cin != planes * 4:
        down = _conv_bn(cin, planes * 4, 1, stride)
    # the first unit of a dilated stage keeps the previous dilation, as torchvision does
    units = [Bottleneck(cin, planes, stride, max(1, dilation // 2), down)]
    units += [Bottleneck(planes * 4, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*units)


class ASPP(nn.Module):
    """1x1 + three dilated 3x3 branches + image pooling, concatenated and projected."""

    def __init__(self, cin: int, rates, out: int = 256):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(_conv_bn(cin, out, 1), nn.ReLU())]
            + [nn.Sequential(_conv_bn(cin, out, 3, 1, r), nn.ReLU()) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn(cin, out, 1), nn.ReLU())
        self.project = nn.Sequential(_conv_bn(out * (len(rates) + 2), out, 1), nn.ReLU(),
                                     nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear",
                                  align_corners=False))
        return self.project(torch.cat(outs, 1))


class DeepLabV3(nn.Module):
    """DeepLabV3-ResNet50 at output stride 16 or 8; logits at the input size."""

    def __init__(self, classes: int = 21, output_stride: int = 16):
        super().__init__()
        s3, d3, s4, d4 = (1, 2, 1, 4) if output_stride == 8 else (2, 1, 1, 2)
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layer1 = _stage(64, 64, 3, 1, 1)
        self.layer2 = _stage(256, 128, 4, 2, 1)
        self.layer3 = _stage(512, 256, 6, s3, d3)
        self.layer4 = _stage(1024, 512, 3, s4, d4)
        rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
        self.head = nn.Sequential(ASPP(2048, rates), _conv_bn(256, 256, 3), nn.ReLU(),
                                  nn.Conv2d(256, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return F.interpolate(self.head(features), size=size, mode="bilinear",
                             align_corners=False)


def _median(times: List[float]) -> float:
    return sorted(times)[len(times) // 2]


def forward_seconds(size: int, stride: int, bf16: bool, repeats: int, warmup: int) -> float:
    """Median seconds of one forward pass (batch 1)."""
    net = DeepLabV3(21, stride).eval()
    x = torch.randn(1, 3, size, size)
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(warmup + repeats):
            start = time.perf_counter()
            net(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return _median(times)


def train_seconds(batch: int, crop: int, stride: int, iterations: int, bf16: bool,
                  warmup: int = 1) -> float:
    """Median seconds of one SGD step (momentum 0.9, weight decay; cross-entropy over the
    pixels, 255 ignored) on random data."""
    net = DeepLabV3(21, stride).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, crop, crop)
    y = torch.randint(0, 21, (batch, crop, crop))
    times = []
    for i in range(warmup + iterations):
        start = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = F.cross_entropy(out.float(), y, ignore_index=255)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return _median(times)


if __name__ == "__main__":  # python torch_model.py '{"mode": "forward", ...}': prints seconds
    request = json.loads(sys.argv[1])
    mode = request.pop("mode")
    torch.set_num_threads(request.pop("threads"))
    torch.manual_seed(0)
    seconds = forward_seconds(**request) if mode == "forward" else train_seconds(**request)
    print(json.dumps({"seconds": seconds}), flush=True)
