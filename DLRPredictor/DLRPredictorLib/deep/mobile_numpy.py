"""MobileNetV2 / EfficientNet-Lite inference in numpy: the :mod:`mobile_nets` networks without torch.

The same approach as :mod:`resnet_numpy` (whose convolution and BatchNorm folding it reuses):
channels-last activations, every BatchNorm folded into the convolution before it, the stem and the
1x1 convolutions as matrix products (the 1x1 ones need no im2col copy). A depthwise convolution
has one kxk filter per channel, which is no matrix product: one ``einsum`` over a strided window
view of the padded input sums its k*k taps per channel. ReLU6 is a clip to [0, 6].

Agreement with torch (test_mobile_numpy.py, real torch networks with random BatchNorm statistics
and the ImageNet weights): within the tolerance of the ResNet engine, 1e-5 of the largest head
activation. The API is :class:`resnet_numpy.ResNetInference`'s: :meth:`trunk` returns the last
feature map (the head's activations, which Grad-CAM explains), :meth:`head` the pooled vector and
the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backbones import HEAD_CHANNELS, STEM_CHANNELS, backbone
from .resnet_numpy import _BN_PARTS, ResNetInference, _bn_shapes, _Conv, _conv, _fold, check_tensors

_RELU6 = 6.0


def expected_shapes(arch: str, in_channels: int = 1, num_classes: int = 2) -> dict[str, tuple[int, ...]]:
    """Every ``state_dict`` name of a :mod:`mobile_nets` network with its shape, in order.

    Raises:
        ConfigError: unknown architecture.
    """
    spec = backbone(arch)
    shapes: dict[str, tuple[int, ...]] = {"stem.conv.weight": (STEM_CHANNELS, int(in_channels), 3, 3)}
    shapes.update(_bn_shapes("stem.bn", STEM_CHANNELS))
    for i, b in enumerate(spec.blocks):
        if b.expand != 1:
            shapes[f"blocks.{i}.expand.conv.weight"] = (b.hidden, b.cin, 1, 1)
            shapes.update(_bn_shapes(f"blocks.{i}.expand.bn", b.hidden))
        shapes[f"blocks.{i}.dw.conv.weight"] = (b.hidden, 1, b.kernel, b.kernel)
        shapes.update(_bn_shapes(f"blocks.{i}.dw.bn", b.hidden))
        shapes[f"blocks.{i}.project.conv.weight"] = (b.cout, b.hidden, 1, 1)
        shapes.update(_bn_shapes(f"blocks.{i}.project.bn", b.cout))
    shapes["head.conv.weight"] = (HEAD_CHANNELS, spec.blocks[-1].cout, 1, 1)
    shapes.update(_bn_shapes("head.bn", HEAD_CHANNELS))
    shapes["fc.weight"] = (int(num_classes), HEAD_CHANNELS)
    shapes["fc.bias"] = (int(num_classes),)
    return shapes


@dataclass(frozen=True)
class _Depthwise:
    """A depthwise convolution with its BatchNorm folded in: (k, k, C) weights, (C,) bias."""

    weight: np.ndarray
    bias: np.ndarray
    stride: int


def _fold_depthwise(arrays: Mapping[str, np.ndarray], prefix: str, stride: int, eps: float) -> _Depthwise:
    w = arrays[f"{prefix}.conv.weight"]  # (C, 1, k, k)
    gamma, beta, mean, var = (arrays[f"{prefix}.bn.{p}"].astype(np.float64) for p in _BN_PARTS[:4])
    scale = gamma / np.sqrt(var + eps)
    folded = (w[:, 0] * scale.astype(np.float32)[:, None, None]).transpose(1, 2, 0)
    bias = (beta - mean * scale).astype(np.float32)
    return _Depthwise(np.ascontiguousarray(folded, dtype=np.float32), bias, stride)


def _depthwise(x: np.ndarray, d: _Depthwise) -> np.ndarray:
    """NHWC depthwise convolution (padding k // 2), folded BatchNorm and ReLU6."""
    n, h, w, c = x.shape
    k = d.weight.shape[0]
    p = k // 2
    padded = np.zeros((n, h + 2 * p, w + 2 * p, c), np.float32)
    padded[:, p : p + h, p : p + w] = x
    s = d.stride
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    sn, sh, sw, sc = padded.strides
    # (n, ho, wo, k, k, c) windows of the padded input, no copy; one einsum sums the k*k taps of
    # every output element in C: 2-3x faster than k*k shifted multiply-adds, and a single call
    # (one release of the GIL) where k*k calls each had to take it back from pyradiomics' thread.
    windows = np.lib.stride_tricks.as_strided(
        padded, (n, ho, wo, k, k, c), (sn, sh * s, sw * s, sh, sw, sc), writeable=False
    )
    out = np.einsum("nhwijc,ijc->nhwc", windows, d.weight)
    out += d.bias
    return np.clip(out, 0.0, _RELU6, out=out)


def _conv_act(x: np.ndarray, c: _Conv, relu6: bool) -> np.ndarray:
    out = _conv(x, c, relu=relu6)
    return np.minimum(out, _RELU6, out=out) if relu6 else out


@dataclass(frozen=True)
class _Block:
    expand: _Conv | None
    dw: _Depthwise
    project: _Conv
    residual: bool


class InvertedResidualInference:
    """The eval-mode forward pass of a :mod:`mobile_nets` network in numpy.

    Args:
        tensors: ``state_dict`` tensors (checked against :func:`expected_shapes`).
        arch: a registry name of the "inverted_residual" family.
        in_channels: channels of the stem.
        num_classes: outputs of the fc head.
        source: where the tensors came from, for messages.

    Raises:
        BundleError: the tensors do not fit the declared network.
    """

    def __init__(
        self,
        tensors: Mapping[str, Any],
        arch: str,
        in_channels: int = 1,
        num_classes: int = 2,
        source: str = "the given state dict",
    ) -> None:
        spec = backbone(arch)
        expected = expected_shapes(arch, in_channels, num_classes)
        arrays = check_tensors(tensors, arch, in_channels, num_classes, source, expected=expected)
        eps = spec.bn_eps
        self.stem = _fold(arrays, "stem.conv", "stem.bn", stride=2, pad=1, eps=eps)
        blocks = []
        for i, b in enumerate(spec.blocks):
            p = f"blocks.{i}"
            expand = _fold(arrays, f"{p}.expand.conv", f"{p}.expand.bn", 1, 0, eps) if b.expand != 1 else None
            dw = _fold_depthwise(arrays, f"{p}.dw", b.stride, eps)
            project = _fold(arrays, f"{p}.project.conv", f"{p}.project.bn", 1, 0, eps)
            blocks.append(_Block(expand, dw, project, b.residual))
        self.blocks = tuple(blocks)
        self.head_conv = _fold(arrays, "head.conv", "head.bn", 1, 0, eps)
        self.fc_weight = np.ascontiguousarray(arrays["fc.weight"], dtype=np.float32)
        self.fc_bias = np.asarray(arrays["fc.bias"], dtype=np.float32)
        self.in_channels = int(in_channels)

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        """The head's activations (after ReLU6), channels-last.

        Args:
            crops: (N, C, H, W) float32 inputs (validated by the caller).

        Returns:
            (N, h, w, 1280) float32, h and w about H/32 and W/32.
        """
        x = np.ascontiguousarray(np.transpose(crops, (0, 2, 3, 1)), dtype=np.float32)
        x = _conv_act(x, self.stem, relu6=True)  # 3x3: im2col, as the ResNet stem
        for b in self.blocks:
            out = _conv_act(x, b.expand, relu6=True) if b.expand is not None else x
            out = _conv_act(_depthwise(out, b.dw), b.project, relu6=False)
            if b.residual:
                out += x
            x = out
        return _conv_act(x, self.head_conv, relu6=True)

    # Average pool, fc layer and Grad-CAM weights: the same head as the ResNet's (pool + linear).
    head = ResNetInference.head
    gradcam_weights = ResNetInference.gradcam_weights
