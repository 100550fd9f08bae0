"""Network weights as files and arrays: safetensors writing, checked loading into torch.

Weights are stored as safetensors (tensors only: reading one runs no code); nothing is pickled.
torch is imported only by :func:`load_weights`, which fills a torch network.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

WEIGHTS_FORMAT = "dlrpredictor-resnet-v1"


class StoredNetwork(Protocol):
    """What a ``deep_model.DeepModel`` offers for saving: its weights and the network they fit."""

    @property
    def tensors(self) -> Mapping[str, np.ndarray]: ...

    @property
    def arch(self) -> str: ...

    @property
    def in_channels(self) -> int: ...

    @property
    def num_classes(self) -> int: ...


def as_numpy(value: Any) -> np.ndarray:
    """A tensor (torch, on any device) or array as a numpy array, without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def state_arrays(model: StoredNetwork | torch.nn.Module) -> dict[str, np.ndarray]:
    """A network's weights by state-dict name as numpy arrays (a copy for a torch module).

    Args:
        model: a ``DeepModel`` (its stored tensors are returned as they are) or a torch module.

    Returns:
        {name: C-contiguous array}.
    """
    if not hasattr(model, "state_dict"):  # a DeepModel: the weights as it holds them
        return dict(model.tensors)
    # A copy: a snapshot of the weights, whatever later happens to the module.
    return {k: np.array(as_numpy(v), order="C") for k, v in model.state_dict().items()}


def save_safetensors(
    model: StoredNetwork | torch.nn.Module,
    path: str | Path,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a network's weights (state dict tensors only) as a safetensors file.

    Args:
        model: a ``DeepModel`` or a torch module.
        path: destination file.
        metadata: extra string key/values stored in the file header.

    Returns:
        The path written.
    """
    from safetensors.numpy import save_file

    meta = {"format": WEIGHTS_FORMAT}
    if not hasattr(model, "state_dict"):  # a DeepModel declares its network
        meta.update(arch=model.arch, in_channels=str(model.in_channels), num_classes=str(model.num_classes))
        if getattr(model, "members", 1) > 1:  # a seed ensemble: tensors named member<m>.<name>
            meta["members"] = str(model.members)  # type: ignore[attr-defined]
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state_arrays(model), str(path), metadata=meta)
    return path


def load_weights(
    net: torch.nn.Module,
    tensors: Mapping[str, Any],
    arch: str,
    in_channels: int,
    num_classes: int,
    *,
    source: str,
) -> None:
    """Copy ``state_dict`` tensors into a torch network after checking them (names, shapes, values).

    Raises:
        BundleError: the tensors do not fit the declared network (see ``engines.check_tensors``).
    """
    import torch

    from .engines import check_tensors

    arrays = check_tensors(
        {k: as_numpy(v) for k, v in tensors.items()}, arch, in_channels, num_classes, source
    )
    state = net.state_dict()
    # np.array copies: safetensors' arrays are read-only, which torch.from_numpy warns about.
    net.load_state_dict({k: torch.from_numpy(np.array(v)).to(state[k].dtype) for k, v in arrays.items()})
