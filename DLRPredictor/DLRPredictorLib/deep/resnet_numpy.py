"""ResNet inference in numpy: a bundle's network applied without importing torch.

Why: ``import torch`` alone took 1.6-2.7 s of a 3 s cold-start budget on the 2-core machine
here (a CUDA build mapping about 3 GB of shared libraries), in every fresh process and in the
batch's fork server, and Slicer has no torch unless the user installs it. Applying a trained
ResNet needs only convolutions, ReLU, max-pooling, averaging and one matrix product, which
numpy's BLAS does at about the speed of torch on one core (ResNet18, 96 px crop: about 20 ms
against 17 ms for torch's BatchNorm-folded channels-last trunk, both on one thread).

The weights are the bundle's safetensors tensors, named and shaped exactly as the torch network's
``state_dict`` (:mod:`resnet`, torchvision's layout); they are checked name by name before use.
In eval mode every BatchNorm is a fixed per-channel affine map, so it is folded into the
convolution before it (the scale in float64, the product in float32, as torch's own
``fuse_conv_bn_eval``). Activations are kept channels-last (N, H, W, C) so that each
convolution is one matrix product of the image patches (im2col) with the folded kernel.

Agreement with torch (test_resnet_numpy.py, real torch networks with random BatchNorm
statistics): within 1e-5 of the torch network's layer4 activations. As with torch, the last
digits (about 1e-6 relative) depend on how many crops share a batch and on the number of BLAS
threads, because OpenBLAS then picks other kernels. A prediction always runs one crop on one
BLAS thread (``predictor``: interactive and batch workers alike), so its digits repeat exactly.
Training stays in torch (:mod:`cnn_training`); this module only applies finished weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import BundleError
from .resnet import LAYOUTS

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, which resnet.py uses
_STAGE_PLANES = (64, 128, 256, 512)
_BN_PARTS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: Input pixels per forward chunk: 32 crops of 96 px. Bounds the im2col buffers (about 45 MB
#: for layer1 of ResNet18) whatever the batch or crop size.
CHUNK_PIXELS = 32 * 96 * 96


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{p}": (() if p == "num_batches_tracked" else (channels,)) for p in _BN_PARTS}


def expected_shapes(arch: str, in_channels: int = 1, num_classes: int = 2) -> dict[str, tuple[int, ...]]:
    """Every ``state_dict`` name of a :mod:`resnet` network with its shape.

    Args:
        arch: a key of :data:`resnet.LAYOUTS`.
        in_channels: channels of conv1.
        num_classes: outputs of the fc head.

    Returns:
        ``{name: shape}`` in the network's order (``num_batches_tracked`` has shape ``()``).

    Raises:
        KeyError: unknown architecture (callers validate first).
    """
    kind, blocks = LAYOUTS[arch]
    expansion = 1 if kind == "basic" else 4
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, int(in_channels), 7, 7)}
    shapes.update(_bn_shapes("bn1", 64))
    cin = 64
    for stage, (planes, count) in enumerate(zip(_STAGE_PLANES, blocks)):
        for b in range(count):
            p = f"layer{stage + 1}.{b}"
            if kind == "basic":
                convs = [(cin, planes, 3), (planes, planes, 3)]
            else:
                convs = [(cin, planes, 1), (planes, planes, 3), (planes, planes * 4, 1)]
            for i, (ci, co, k) in enumerate(convs, start=1):
                shapes[f"{p}.conv{i}.weight"] = (co, ci, k, k)
                shapes.update(_bn_shapes(f"{p}.bn{i}", co))
            stride = 2 if stage > 0 and b == 0 else 1
            if b == 0 and (stride != 1 or cin != planes * expansion):
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, cin, 1, 1)
                shapes.update(_bn_shapes(f"{p}.downsample.1", planes * expansion))
            cin = planes * expansion
    shapes["fc.weight"] = (int(num_classes), cin)
    shapes["fc.bias"] = (int(num_classes),)
    return shapes


def check_tensors(  # noqa: PLR0917 - the engines' arguments plus the shapes to check
    tensors: Mapping[str, Any],
    arch: str,
    in_channels: int,
    num_classes: int,
    source: str,
    expected: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """The tensors as numpy arrays, after checking names, shapes, types and finiteness.

    Args:
        tensors: name -> array (numpy, or anything ``np.asarray`` accepts, e.g. CPU torch tensors).
        arch: declared architecture.
        in_channels: declared input channels.
        num_classes: declared fc outputs.
        source: where the tensors came from, for messages.
        expected: the names and shapes to check against; None: the ResNet ``arch``'s
            (:func:`expected_shapes`). Other backbones pass theirs (``mobile_numpy``).

    Returns:
        name -> numpy array.

    Raises:
        BundleError: missing, unexpected or misshapen tensors, non-float weights, NaN or inf.
    """
    if expected is None:
        expected = expected_shapes(arch, in_channels, num_classes)
    arrays = {str(k): np.asarray(v) for k, v in tensors.items()}
    missing = [k for k in expected if k not in arrays]
    unexpected = sorted(set(arrays) - set(expected))
    wrong = [
        f"{k} {tuple(arrays[k].shape)} != {expected[k]}"
        for k in expected
        if k in arrays and tuple(arrays[k].shape) != expected[k]
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} with wrong shape (e.g. {'; '.join(wrong[:3])})")
        raise BundleError(
            f"CNN weights in {source} do not fit the declared network: {', '.join(parts)}; "
            "the bundle's architecture/channels do not match its weights file - "
            "reinstall or retrain the bundle"
        )
    for k, arr in arrays.items():
        if k.endswith("num_batches_tracked"):
            continue  # a training counter; inference never reads it
        if not np.issubdtype(arr.dtype, np.floating):
            raise BundleError(f"CNN weight {k} in {source} is not floating point")
        if not np.all(np.isfinite(arr)):
            raise BundleError(f"CNN weight {k} in {source} contains NaN or infinite values")
    return arrays


@dataclass(frozen=True)
class _Conv:
    """A convolution with its BatchNorm folded in, as an im2col matrix (kh*kw*cin, cout) view."""

    matrix: np.ndarray
    bias: np.ndarray
    size: int
    stride: int
    pad: int


def _fold(  # noqa: PLR0917
    arrays: Mapping[str, np.ndarray], conv: str, bn: str, stride: int, pad: int, eps: float = BN_EPS
) -> _Conv:
    w = arrays[f"{conv}.weight"]
    gamma, beta, mean, var = (arrays[f"{bn}.{p}"].astype(np.float64) for p in _BN_PARTS[:4])
    scale = gamma / np.sqrt(var + eps)
    cout, cin, kh, kw = w.shape
    # Columns ordered (kernel row, kernel column, input channel), the order of the patches below.
    # Kept as the transposed view of a C-ordered (cout, K) array: BLAS reads it as it is, while
    # copying it into (K, cout) order took about 0.2 s of every load.
    folded = np.ascontiguousarray((w * scale.astype(np.float32)[:, None, None, None]).transpose(0, 2, 3, 1))
    return _Conv(
        folded.reshape(cout, kh * kw * cin).T,
        (beta - mean * scale).astype(np.float32),
        kh,
        stride,
        pad,
    )


def _conv(x: np.ndarray, c: _Conv, relu: bool) -> np.ndarray:
    """NHWC convolution: one matrix product of the patches (im2col) with the folded kernel."""
    n, h, w, cin = x.shape
    if c.pad:
        padded = np.zeros((n, h + 2 * c.pad, w + 2 * c.pad, cin), np.float32)
        padded[:, c.pad : c.pad + h, c.pad : c.pad + w] = x
    else:
        padded = x
    ho = (h + 2 * c.pad - c.size) // c.stride + 1
    wo = (w + 2 * c.pad - c.size) // c.stride + 1
    if c.size == 1:
        patches = padded[:, :: c.stride, :: c.stride].reshape(n * ho * wo, cin)
    else:
        sn, sh, sw, sc = padded.strides
        view = np.lib.stride_tricks.as_strided(
            padded,
            (n, ho, wo, c.size, c.size, cin),
            (sn, sh * c.stride, sw * c.stride, sh, sw, sc),
            writeable=False,
        )
        patches = view.reshape(n * ho * wo, c.size * c.size * cin)  # the one copy (im2col)
    out = patches @ c.matrix
    out += c.bias
    if relu:
        np.maximum(out, 0.0, out=out)
    return out.reshape(n, ho, wo, -1)


def _maxpool3x3s2(x: np.ndarray) -> np.ndarray:
    """torch's MaxPool2d(kernel_size=3, stride=2, padding=1) on NHWC (padding never wins)."""
    n, h, w, c = x.shape
    padded = np.full((n, h + 2, w + 2, c), -np.inf, np.float32)
    padded[:, 1:-1, 1:-1] = x
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = padded[:, 0 : 2 * ho : 2, 0 : 2 * wo : 2].copy()
    for i in range(3):
        for j in range(3):
            if i or j:
                np.maximum(out, padded[:, i : i + 2 * ho : 2, j : j + 2 * wo : 2], out=out)
    return out


@dataclass(frozen=True)
class _Block:
    convs: tuple[_Conv, ...]  # 2 (basic) or 3 (bottleneck); ReLU after all but the last
    downsample: _Conv | None


class ResNetInference:
    """A ResNet's eval-mode forward pass in numpy, from its ``state_dict`` tensors.

    Args:
        tensors: ``state_dict`` tensors (checked by :func:`check_tensors`).
        arch: a key of :data:`resnet.LAYOUTS`.
        in_channels: channels of conv1.
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
        arrays = check_tensors(tensors, arch, in_channels, num_classes, source)
        kind, counts = LAYOUTS[arch]
        self.stem = _fold(arrays, "conv1", "bn1", stride=2, pad=3)
        blocks = []
        for stage, count in enumerate(counts):
            for b in range(count):
                p = f"layer{stage + 1}.{b}"
                stride = 2 if stage > 0 and b == 0 else 1
                convs: tuple[_Conv, ...]
                if kind == "basic":
                    convs = (_fold(arrays, f"{p}.conv1", f"{p}.bn1", stride, 1),
                             _fold(arrays, f"{p}.conv2", f"{p}.bn2", 1, 1))
                else:  # the stride sits on the 3x3 convolution (ResNet v1.5, as torchvision)
                    convs = (_fold(arrays, f"{p}.conv1", f"{p}.bn1", 1, 0),
                             _fold(arrays, f"{p}.conv2", f"{p}.bn2", stride, 1),
                             _fold(arrays, f"{p}.conv3", f"{p}.bn3", 1, 0))
                down = None
                if f"{p}.downsample.0.weight" in arrays:
                    down = _fold(arrays, f"{p}.downsample.0", f"{p}.downsample.1", stride, 0)
                blocks.append(_Block(convs, down))
        self.blocks = tuple(blocks)
        self.fc_weight = np.ascontiguousarray(arrays["fc.weight"], dtype=np.float32)
        self.fc_bias = np.asarray(arrays["fc.bias"], dtype=np.float32)
        self.in_channels = int(in_channels)

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        """layer4 activations, channels-last.

        Args:
            crops: (N, C, H, W) float32 inputs (validated by the caller).

        Returns:
            (N, h, w, D) float32, h and w about H/32 and W/32.
        """
        x = np.ascontiguousarray(np.transpose(crops, (0, 2, 3, 1)), dtype=np.float32)
        x = _maxpool3x3s2(_conv(x, self.stem, relu=True))
        for block in self.blocks:
            identity = x if block.downsample is None else _conv(x, block.downsample, relu=False)
            for c in block.convs[:-1]:
                x = _conv(x, c, relu=True)
            x = _conv(x, block.convs[-1], relu=False)
            x += identity
            np.maximum(x, 0.0, out=x)
        return x

    def head(self, activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Average pool and fc layer.

        Args:
            activations: (N, h, w, D) from :meth:`trunk`.

        Returns:
            (pooled (N, D) float32, logits (N, classes) float32).
        """
        pooled = activations.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
        return pooled, pooled @ self.fc_weight.T + self.fc_bias

    def gradcam_weights(self, target_class: int, cells: int) -> np.ndarray:
        """Grad-CAM channel weights: the spatial mean of d logit[target] / d activation.

        The head is an average pool followed by a linear layer, so the gradient is the same in
        every one of the ``cells`` layer4 cells: fc.weight[target] / cells, no backward pass.

        Args:
            target_class: the explained class.
            cells: h * w of the layer4 map.

        Returns:
            (D,) float64 weights.
        """
        return self.fc_weight[int(target_class)].astype(np.float64) / float(cells)
