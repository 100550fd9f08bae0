"""MobileNetV2 and EfficientNet-Lite in torch: the inverted-residual backbones of :mod:`backbones`.

One module layout serves both (the registry entry gives the blocks and the BatchNorm epsilon), and
its ``state_dict`` names are what a bundle's safetensors file holds and what :mod:`mobile_numpy`
reads::

    stem.conv.weight, stem.bn.*                       3x3 stride 2, BatchNorm, ReLU6
    blocks.<i>.expand.conv.weight, .expand.bn.*       1x1, BatchNorm, ReLU6 (absent when expand is 1)
    blocks.<i>.dw.conv.weight, .dw.bn.*               depthwise kxk, BatchNorm, ReLU6
    blocks.<i>.project.conv.weight, .project.bn.*     1x1, BatchNorm (linear)
    head.conv.weight, head.bn.*                       1x1 to 1280, BatchNorm, ReLU6
    fc.weight, fc.bias                                after average pooling (and dropout in training)

Padding is symmetric (k // 2), as torchvision's MobileNetV2 and timm's ``efficientnet_lite``; the
EfficientNet-Lite ImageNet weights classify photos correctly with it (test_backbones.py).
torch is imported only when a network is built.
"""

from __future__ import annotations

from typing import Any

from .backbones import HEAD_CHANNELS, STEM_CHANNELS, backbone


def build(arch: str, num_classes: int, in_channels: int, initialise: bool = True) -> Any:
    """An inverted-residual network of the registry (randomly initialised unless told not to).

    Args:
        arch: a registry name of the "inverted_residual" family.
        num_classes: outputs of the fc head.
        in_channels: channels of the stem (1 for grayscale ultrasound).
        initialise: False skips the explicit initialisation, for a network whose every weight is
            loaded next.

    Returns:
        The ``torch.nn.Module``, in training mode, on the CPU.

    Raises:
        ConfigError: unknown architecture.
    """
    from torch import Tensor, nn

    spec = backbone(arch)
    eps = spec.bn_eps

    class ConvBN(nn.Module):
        def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, act: bool) -> None:  # noqa: PLR0917
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=eps)
            self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

        def forward(self, x: Tensor) -> Tensor:
            return self.act(self.bn(self.conv(x)))

    class InvertedResidual(nn.Module):
        def __init__(self, block: Any) -> None:
            super().__init__()
            hidden = block.hidden
            self.residual = block.residual
            if block.expand != 1:
                self.expand = ConvBN(block.cin, hidden, 1, 1, 1, act=True)
            self.dw = ConvBN(hidden, hidden, block.kernel, block.stride, hidden, act=True)
            self.project = ConvBN(hidden, block.cout, 1, 1, 1, act=False)

        def forward(self, x: Tensor) -> Tensor:
            out = self.expand(x) if hasattr(self, "expand") else x
            out = self.project(self.dw(out))
            return x + out if self.residual else out

    class InvertedResidualNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = ConvBN(int(in_channels), STEM_CHANNELS, 3, 2, 1, act=True)
            self.blocks = nn.Sequential(*(InvertedResidual(b) for b in spec.blocks))
            self.head = ConvBN(spec.blocks[-1].cout, HEAD_CHANNELS, 1, 1, 1, act=True)
            self.dropout = nn.Dropout(spec.dropout)
            self.fc = nn.Linear(HEAD_CHANNELS, int(num_classes))

        def feature_map(self, x: Tensor) -> Tensor:
            """The head's activations (what Grad-CAM explains), channels first."""
            return self.head(self.blocks(self.stem(x)))

        def pooled(self, x: Tensor) -> Tensor:
            """The average-pooled features: the forward pass without the classification layer."""
            return self.feature_map(x).mean(dim=(2, 3))

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(self.dropout(self.pooled(x)))

    net = InvertedResidualNet()
    if initialise:  # torchvision's MobileNetV2 initialisation
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
    return net
