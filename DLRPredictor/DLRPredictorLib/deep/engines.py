"""One entry point per task for every backbone of the registry: shapes, checks, numpy engine, torch.

Each function looks up the backbone's family (:mod:`backbones`) and calls that family's module:
:mod:`resnet` / :mod:`resnet_numpy` or :mod:`mobile_nets` / :mod:`mobile_numpy`. The numpy
engines share one API (``trunk``, ``head``, ``gradcam_weights``, ``in_channels``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .backbones import backbone
from .resnet_numpy import ResNetInference


def _is_resnet(arch: str) -> bool:
    return backbone(arch).family == "resnet"


def expected_shapes(arch: str, in_channels: int = 1, num_classes: int = 2) -> dict[str, tuple[int, ...]]:
    """Every ``state_dict`` name of the backbone's network with its shape.

    Raises:
        ConfigError: unknown architecture.
    """
    if _is_resnet(arch):
        from .resnet_numpy import expected_shapes as resnet_shapes

        return resnet_shapes(arch, in_channels, num_classes)
    from .mobile_numpy import expected_shapes as mobile_shapes

    return mobile_shapes(arch, in_channels, num_classes)


def check_tensors(
    tensors: Mapping[str, Any], arch: str, in_channels: int, num_classes: int, source: str
) -> dict[str, np.ndarray]:
    """The tensors as numpy arrays, checked name by name against the backbone's network.

    Raises:
        ConfigError: unknown architecture.
        BundleError: missing, unexpected or misshapen tensors, non-float weights, NaN or inf.
    """
    from .resnet_numpy import check_tensors as check

    expected = expected_shapes(arch, in_channels, num_classes)
    return check(tensors, arch, in_channels, num_classes, source, expected=expected)


def numpy_engine(
    tensors: Mapping[str, Any], arch: str, in_channels: int, num_classes: int, source: str
) -> Any:
    """The numpy inference engine of these weights (``ResNetInference`` or ``InvertedResidualInference``).

    Raises:
        ConfigError: unknown architecture.
        BundleError: the tensors do not fit the declared network.
    """
    if _is_resnet(arch):
        return ResNetInference(tensors, arch, in_channels, num_classes, source)
    from .mobile_numpy import InvertedResidualInference

    return InvertedResidualInference(tensors, arch, in_channels, num_classes, source)


def build_torch(arch: str, num_classes: int, in_channels: int, initialise: bool = True) -> Any:
    """The backbone's torch network (randomly initialised unless ``initialise`` is False).

    Raises:
        ConfigError: unknown architecture.
    """
    if _is_resnet(arch):
        from . import resnet

        return resnet.build(arch, num_classes, in_channels, initialise=initialise)
    from . import mobile_nets

    return mobile_nets.build(arch, num_classes, in_channels, initialise=initialise)


#: Name prefix of member m's tensors in the weights of a seed ensemble ("member0.stem.conv.weight").
MEMBER_PREFIX = "member{}."


def member_tensors(tensors: Mapping[str, Any], members: int) -> list[dict[str, Any]]:
    """Split an ensemble's tensors into its members' ``state_dict`` tensors (one member: as given).

    Raises:
        BundleError: a tensor that belongs to no member.
    """
    from ..base.errors import BundleError

    if members == 1:
        return [dict(tensors)]
    parts: list[dict[str, Any]] = [{} for _ in range(members)]
    for name, value in tensors.items():
        head, _, rest = str(name).partition(".")
        index = head[len("member") :] if head.startswith("member") else ""
        if not index.isdigit() or int(index) >= members or not rest:
            raise BundleError(f"CNN weight {name} belongs to none of the {members} ensemble members")
        parts[int(index)][rest] = value
    return parts


def ensemble_tensors(states: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One weights mapping for several members (the inverse of :func:`member_tensors`)."""
    if len(states) == 1:
        return dict(states[0])
    return {MEMBER_PREFIX.format(m) + k: v for m, state in enumerate(states) for k, v in state.items()}


class EnsembleInference:
    """A seed ensemble applied as one network: the members' last feature maps averaged.

    The members are fine-tuned from one set of initial weights (ImageNet, SimCLR or a file), so
    channel k means the same in each of them; averaging their maps averages their pooled features
    (pooling is linear) and keeps one feature vector of the backbone's width for the DL signature.
    The classification head is the members' average fc layer applied to the averaged features, so
    ``trunk``, ``head`` and ``gradcam_weights`` keep the single network's meaning: Grad-CAM is the
    exact gradient of that head with respect to the averaged map.

    Args:
        engines: the members' numpy engines (same backbone and input channels).
    """

    def __init__(self, engines: list[Any]) -> None:
        self.members = tuple(engines)
        self.fc_weight = np.mean([e.fc_weight for e in engines], axis=0, dtype=np.float64).astype(np.float32)
        self.fc_bias = np.mean([e.fc_bias for e in engines], axis=0, dtype=np.float64).astype(np.float32)
        self.in_channels = engines[0].in_channels

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        """The members' last feature maps averaged, (N, h, w, D) float32."""
        total = self.members[0].trunk(crops).astype(np.float64)
        for engine in self.members[1:]:
            total += engine.trunk(crops)
        return (total / len(self.members)).astype(np.float32)

    # Average pool, fc layer and Grad-CAM weights: the single network's head, on the averages.
    head = ResNetInference.head
    gradcam_weights = ResNetInference.gradcam_weights


def ensemble_engine(  # noqa: PLR0917 - the numpy engine's arguments plus the member count
    tensors: Mapping[str, Any], arch: str, in_channels: int, num_classes: int, source: str, members: int = 1
) -> Any:
    """The numpy engine of a network (``members`` 1) or of a seed ensemble of ``members`` networks.

    Raises:
        ConfigError: unknown architecture.
        BundleError: the tensors do not fit the declared network(s).
    """
    parts = member_tensors(tensors, members)
    engines = [
        numpy_engine(t, arch, in_channels, num_classes, source if members == 1 else f"{source} (member {m})")
        for m, t in enumerate(parts)
    ]
    return engines[0] if members == 1 else EnsembleInference(engines)
