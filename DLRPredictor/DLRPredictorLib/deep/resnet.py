"""ResNet-18/34/50/101 (He et al. 2016) with torchvision's exact module layout.

Why not ``torchvision.models``: importing torchvision imports ``torchvision.ops``, which imports
``torch._dynamo``; that alone costs 1.5-3.5 s of a 3 s cold-start budget on 2 cores, and the
prediction needs nothing from torchvision but the architecture. This module builds the same
network (same submodule names, parameter and buffer names and shapes, same layer order, same
initialisation scheme), so a torchvision ``state_dict`` loads into it with ``strict=True`` and the
outputs agree; ``test_resnet.py`` checks both against torchvision itself for every architecture.

torch is imported only when a network is built (``build``): importing this module costs nothing.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

# True while a network is built only to receive weights (build(..., initialise=False)): its
# random initialisation -- a quarter to half a second of cold start for ResNet18 on 2 cores,
# overwritten at once -- is skipped. A context variable, so a build in another thread is unaffected.
_SKIP_INIT: contextvars.ContextVar[bool] = contextvars.ContextVar("dlr_resnet_skip_init", default=False)

# arch -> (block type, blocks per stage)
LAYOUTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


@functools.cache
def _classes() -> tuple[Any, Any, Any]:
    """The block and network classes, defined on first use so that torch loads lazily."""
    from torch import Tensor, nn

    # The torch layers, except that their default random initialisation can be skipped (the
    # parameters then hold uninitialised memory until the weights are loaded). Subclasses keep
    # the parameter names and the isinstance checks of torch and torchvision.
    class Conv2d(nn.Conv2d):
        def reset_parameters(self) -> None:
            if not _SKIP_INIT.get():
                super().reset_parameters()

    class Linear(nn.Linear):
        def reset_parameters(self) -> None:
            if not _SKIP_INIT.get():
                super().reset_parameters()

    def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
        return Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)

    def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
        return Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
            super().__init__()
            self.conv1 = conv3x3(cin, planes, stride)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample
            self.stride = stride

        def forward(self, x: Tensor) -> Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class Bottleneck(nn.Module):
        # The stride sits on the 3x3 convolution (ResNet v1.5), as in torchvision.
        expansion = 4

        def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
            super().__init__()
            self.conv1 = conv1x1(cin, planes)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = conv3x3(planes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = conv1x1(planes, planes * self.expansion)
            self.bn3 = nn.BatchNorm2d(planes * self.expansion)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample
            self.stride = stride

        def forward(self, x: Tensor) -> Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet(nn.Module):
        def __init__(self, block: Any, layers: tuple[int, ...], num_classes: int, in_channels: int):
            super().__init__()
            self.inplanes = 64
            self.dilation = 1
            self.groups = 1
            self.base_width = 64
            # Built with 3 input channels and replaced below, as DLRPredictor always did with
            # torchvision: the random draws then follow the same sequence, so a seed gives
            # bit-identical initial weights (test_resnet.py) and trainings reproduce.
            self.conv1 = Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = Linear(512 * block.expansion, num_classes)
            initialise = not _SKIP_INIT.get()
            for m in self.modules() if initialise else ():  # torchvision's initialisation
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
            if in_channels != 3:
                self.conv1 = Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
                if initialise:
                    nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

        def _make_layer(self, block: Any, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    conv1x1(self.inplanes, planes * block.expansion, stride),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            layers = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def pooled(self, x: Tensor) -> Tensor:
            """The average-pooled features: the forward pass without the classification layer."""
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.avgpool(x).flatten(1)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(self.pooled(x))

    return BasicBlock, Bottleneck, ResNet


def build(arch: str, num_classes: int, in_channels: int, initialise: bool = True) -> Any:
    """A randomly initialised ResNet with torchvision's layout (``state_dict`` compatible).

    Args:
        arch: a key of :data:`LAYOUTS`.
        num_classes: outputs of the fc head.
        in_channels: channels of conv1 (1 for grayscale ultrasound).
        initialise: False leaves the weights uninitialised, for a network whose every weight
            is loaded next (``load_state_dict(strict=True)``); no random number is drawn.

    Returns:
        The ``torch.nn.Module``, in training mode, on the CPU.

    Raises:
        KeyError: unknown architecture (callers validate first).
    """
    kind, layers = LAYOUTS[arch]
    basic, bottleneck, resnet = _classes()
    token = _SKIP_INIT.set(not initialise)
    try:
        return resnet(basic if kind == "basic" else bottleneck, layers, int(num_classes), int(in_channels))
    finally:
        _SKIP_INIT.reset(token)
