"""Checkpoints of the resumable trainers (CNN and SimCLR), and what both need around them.

A checkpoint is a safetensors file of tensors (model, optimiser moments, ...) plus a JSON record
(epoch, history, settings, data fingerprint) that names it: nothing is pickled. The record is
written last, so it commits the tensors (:func:`commit_checkpoint`); reading checks that the
checkpoint belongs to the same settings and data (:func:`read_checkpoint`). Both trainers save
named state dicts plus one optimiser (:func:`save_training_checkpoint`) and get them back with
:func:`load_training_checkpoint`; each decides which state dicts and record entries it keeps
(``cnn.py``, ``ssl.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


def optimizer_state(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """An optimiser's state split for a checkpoint without pickle.

    Returns:
        Tensors named ``optim.<param id>.<name>`` (for safetensors), the non-tensor per-parameter
        values named ``<param id>.<name>`` and the parameter groups (both for JSON).
    """
    import torch

    opt_sd = opt.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in opt_sd["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().clone().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, scalars, opt_sd["param_groups"]


def restore_optimizer(
    opt: torch.optim.Optimizer,
    tensors: Mapping[str, Any],
    scalars: Mapping[str, Any],
    param_groups: list[dict[str, Any]],
) -> None:
    """Load what :func:`optimizer_state` returned (other tensors in ``tensors`` are ignored)."""
    per_param: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            per_param.setdefault(int(pid), {})[name] = v
    for k, v in scalars.items():
        pid, name = k.split(".", 1)
        per_param.setdefault(int(pid), {})[name] = v
    groups = [dict(g) for g in param_groups]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])  # JSON made the tuple a list
    opt.load_state_dict({"state": per_param, "param_groups": groups})


@dataclass(frozen=True)
class CheckpointFiles:
    """What one trainer's checkpoints are called.

    Attributes:
        fmt: the format the record and the tensor file declare.
        stem: the tensor file's name before the 4-digit epoch.
        json_name: the record's file name.
        what: the kind of run, for messages (e.g. "CNN training").
    """

    fmt: str
    stem: str
    json_name: str
    what: str


def commit_checkpoint(
    folder: Path, files: CheckpointFiles, tensors: Mapping[str, Any], record: dict[str, Any], *, epoch: int
) -> None:
    """Tensors to a new ``<files.stem><epoch>.safetensors``, then the JSON record that commits it.

    Both are written to temporary names and renamed, so a run killed at any moment leaves the
    previous checkpoint or the new one, never a mix; older tensor files are removed afterwards.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights_name = f"{files.stem}{epoch:04d}.safetensors"
    tmp = folder / (weights_name + ".tmp")
    save_file(dict(tensors), str(tmp), metadata={"format": files.fmt, "epoch": str(epoch)})
    os.replace(tmp, folder / weights_name)
    record = {"format": files.fmt, **record, "weights_file": weights_name}
    tmp_json = folder / (files.json_name + ".tmp")
    tmp_json.write_text(json.dumps(record, indent=1))
    os.replace(tmp_json, folder / files.json_name)
    for old in folder.glob(f"{files.stem}*.safetensors*"):
        if old.name != weights_name:
            old.unlink(missing_ok=True)


def read_checkpoint(
    folder: Path, files: CheckpointFiles, *, key: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The JSON record and tensors that :func:`commit_checkpoint` wrote, checked.

    Args:
        folder: the checkpoint folder.
        files: the record's file name, the format it must declare and the kind of run.
        key: record entries that must equal these values (settings, data fingerprint): a
            checkpoint resumes only the run it came from.

    Returns:
        (record, tensors by name), or None when the folder holds no record.

    Raises:
        ConfigError: unreadable files, another format or another run's checkpoint.
    """
    from safetensors.torch import load_file

    fmt, what = files.fmt, files.what
    path = folder / files.json_name
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        tensors = load_file(str(folder / record["weights_file"]))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"the {what} checkpoint in {folder} is unreadable ({exc}); delete that folder to restart"
        ) from exc
    if record.get("format") != fmt:
        raise ConfigError(f"{path} is not a DLRPredictor {what} checkpoint; use an empty checkpoint folder")
    if any(record.get(name) != value for name, value in key.items()):
        raise ConfigError(
            f"the {what} checkpoint in {folder} belongs to a run with other settings or other crops; "
            "use an empty checkpoint folder or delete it to restart"
        )
    return record, tensors


def save_training_checkpoint(
    folder: Path,
    files: CheckpointFiles,
    *,
    epoch: int,
    states: Mapping[str, Mapping[str, Any]],
    opt: torch.optim.Optimizer,
    record: Mapping[str, Any],
) -> None:
    """State dicts and an optimiser's state after ``epoch``, committed by :func:`commit_checkpoint`.

    Args:
        folder: the checkpoint folder.
        files: the trainer's file names and format.
        epoch: the 0-based epoch just done.
        states: state dicts by prefix (their tensors are stored as ``<prefix>.<name>``).
        opt: the optimiser; its tensors and parameter groups are stored too.
        record: the trainer's JSON entries; the optimiser's follow them.
    """
    tensors = {
        f"{prefix}.{name}": value.detach().clone().contiguous()
        for prefix, state in states.items()
        for name, value in state.items()
    }
    optim_tensors, scalars, param_groups = optimizer_state(opt)
    tensors.update(optim_tensors)
    full = {**record, "optimizer_param_groups": param_groups, "optimizer_scalars": scalars}
    commit_checkpoint(folder, files, tensors, full, epoch=epoch)


def load_training_checkpoint(
    folder: Path,
    files: CheckpointFiles,
    *,
    key: Mapping[str, Any],
    modules: Mapping[str, torch.nn.Module],
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]] | None:
    """Restore what :func:`save_training_checkpoint` saved, after :func:`read_checkpoint`'s checks.

    Args:
        folder: the checkpoint folder.
        files: the trainer's file names and format.
        key: record entries that must match (settings, data fingerprint).
        modules: modules by prefix, loaded strictly from their state dicts.
        opt: the optimiser to restore.

    Returns:
        (record, the other state dicts by prefix), or None when the folder holds no checkpoint.

    Raises:
        ConfigError: unreadable files, another format or another run's checkpoint.
    """
    found = read_checkpoint(folder, files, key=key)
    if found is None:
        return None
    record, tensors = found
    states: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        prefix, rest = name.split(".", 1)
        if prefix != "optim":
            states.setdefault(prefix, {})[rest] = value
    for prefix, module in modules.items():
        module.load_state_dict(states.pop(prefix, {}), strict=True)
    restore_optimizer(opt, tensors, record.get("optimizer_scalars", {}), record["optimizer_param_groups"])
    return record, states


def weights_digest(state: Mapping[str, Any]) -> str:
    """sha256 over a state dict's names and bytes (tensors or arrays), in name order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        digest.update(key.encode() + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (None: unchanged), restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
