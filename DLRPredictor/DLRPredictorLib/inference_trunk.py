"""The inference form of a ResNet's convolutional trunk: BatchNorm folded, channels-last.

In eval mode a BatchNorm is a fixed per-channel affine map, so it folds exactly into the weights
and bias of the convolution before it. Stored channels-last (NHWC), the convolutions run in
oneDNN's native layout instead of converting NCHW tensors before and after every layer. On a
96 px crop with ResNet18 (2-core machine, one thread) the trunk takes about 14 ms instead of
about 42 ms eager (33 ms traced); outputs stay within 1e-5 of the unfolded NCHW network's scale
(float32 rounding of the folded weights and another summation order).

The folding is done once, when the model loads, and the trunk runs the same operators on every
call (eagerly, or traced bit-identically from the second call on), so a result never depends on
which call of a process produced it. The optimised TorchScript graph tried before
(``torch.jit.optimize_for_inference``) cost about 0.27 s to build, so it only served from a
process's second call, and its results differed from the first call's by about 1e-6.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

# (convolution, BatchNorm) attribute pairs of torchvision-style ResNet blocks, in forward order.
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _fold_pairs(module: Any) -> None:
    """Fold every ResNet (conv, bn) pair below ``module`` in place; BatchNorms become Identity."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for sub in list(module.modules()):
        for conv_name, bn_name in _PAIRS:
            conv, bn = getattr(sub, conv_name, None), getattr(sub, bn_name, None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                setattr(sub, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(sub, bn_name, torch.nn.Identity())
        # A downsample branch is Sequential(conv1x1, BatchNorm2d).
        if isinstance(sub, torch.nn.Sequential) and len(sub) == 2:
            conv, bn = sub[0], sub[1]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                sub[0] = fuse_conv_bn_eval(conv, bn)
                sub[1] = torch.nn.Identity()


def build(network: Any) -> torch.nn.Module:
    """conv1 .. layer4 of ``network`` with BatchNorm folded, channels-last, frozen, in eval mode.

    The network itself is left untouched (its weights are what a bundle stores). Feed the result
    a channels-last input (``x.contiguous(memory_format=torch.channels_last)``).

    Args:
        network: a ResNet built by :func:`deep_features.build_resnet` (or torchvision's).

    Returns:
        The trunk, mapping (N, C, H, W) crops to layer4 activations.

    Raises:
        ValueError: a BatchNorm was left unfolded (an architecture this folding does not know).
    """
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    n = network
    trunk = torch.nn.Sequential(
        copy.deepcopy(n.conv1),
        copy.deepcopy(n.bn1),
        torch.nn.ReLU(inplace=True),
        copy.deepcopy(n.maxpool),
        copy.deepcopy(n.layer1),
        copy.deepcopy(n.layer2),
        copy.deepcopy(n.layer3),
        copy.deepcopy(n.layer4),
    ).eval()
    trunk[0] = fuse_conv_bn_eval(trunk[0], trunk[1])
    trunk[1] = torch.nn.Identity()
    _fold_pairs(trunk)
    left = [name for name, m in trunk.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers left unfolded: {', '.join(left[:3])}")
    trunk = trunk.to(memory_format=torch.channels_last)
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk
