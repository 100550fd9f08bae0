"""Deep features: ResNet builder, lesion crops, average-pool features, Grad-CAM, safetensors I/O.

Applying a network needs no torch: crops are resized by :mod:`resample` and the network runs
in numpy (:mod:`resnet_numpy`), so a prediction never pays torch's import (about 2 s of cold
start here). torch is imported only to build a network for training (:func:`build_resnet`) or
when :attr:`DeepModel.network` is asked for. No pretrained weights exist here: a network is
either freshly initialised (for training) or loaded from a safetensors file that ships inside a
model bundle. Nothing is ever unpickled.

Geometry: crops and heatmaps use (row, column) indexing like :class:`case.LesionSlice`; no
array is ever flipped or transposed on the way in or out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.case import LesionSlice
from ..base.errors import BundleError, ConfigError, InputError, LesionError
from ..inputs.resample import resize_bilinear

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101")
FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}
MIN_CROP_SIZE = 32  # a ResNet downsamples 32-fold; smaller inputs leave layer4 empty
RESNET_STRIDE = 32  # input pixels per layer4 cell
WEIGHTS_FORMAT = "dlrpredictor-resnet-v1"

CropBox = tuple[int, int, int, int]


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown CNN architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def feature_dim(arch: str) -> int:
    """Length of the average-pool feature vector of an architecture.

    Args:
        arch: one of :data:`ARCHITECTURES`.

    Returns:
        512 for resnet18/34, 2048 for resnet50/101.

    Raises:
        ConfigError: unknown architecture.
    """
    _check_arch(arch)
    return FEATURE_DIMS[arch]


def build_resnet(
    arch: str, num_classes: int = 2, in_channels: int = 1, initialise: bool = True
) -> torch.nn.Module:
    """A randomly initialised ResNet with torchvision's layout (no pretrained weights).

    Built by :mod:`resnet` rather than ``torchvision.models``: the same modules, names and
    initialisation, without importing torchvision (whose import pulls in ``torch._dynamo`` and
    costs seconds of cold start). Weights saved from either load into the other.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: outputs of the fc head (2 for benign/malignant).
        in_channels: input channels; 1 for grayscale ultrasound.
        initialise: False skips the random initialisation (uninitialised weights), for a network
            that receives every weight next.

    Returns:
        The network, in training mode, on the CPU.

    Raises:
        ConfigError: unknown architecture or invalid channel/class counts.
    """
    _check_arch(arch)
    if int(num_classes) < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if int(in_channels) < 1:
        raise ConfigError(f"in_channels must be at least 1, got {in_channels}")
    from . import resnet

    return resnet.build(arch, int(num_classes), int(in_channels), initialise=initialise)


# --------------------------------------------------------------------------- crops


@dataclass(frozen=True)
class CropSpec:
    """How a lesion crop is cut and resized.

    Attributes:
        margin_fraction: context added on each side, as a fraction of the lesion box side.
        size: output side length in pixels (the CNN input size).
        square: cut a square box (keeps the lesion's aspect ratio after resizing).
    """

    margin_fraction: float = 0.15
    size: int = 224
    square: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin_fraction) and self.margin_fraction >= 0):
            raise ConfigError(
                f"crop margin_fraction must be a finite number >= 0, got {self.margin_fraction}"
            )
        if int(self.size) != self.size or self.size < MIN_CROP_SIZE:
            raise ConfigError(f"crop size must be an integer >= {MIN_CROP_SIZE}, got {self.size}")


def lesion_crop_box(bbox: CropBox, spec: CropSpec) -> CropBox:
    """The crop box around a lesion bounding box, centred on it, possibly leaving the image.

    Args:
        bbox: lesion box (row0, row1, col0, col1), end-exclusive.
        spec: margin and squareness.

    Returns:
        (row0, row1, col0, col1) in slice coordinates; may be negative or beyond the image.

    Raises:
        LesionError: empty or inverted bounding box.
    """
    r0, r1, c0, c1 = (int(v) for v in bbox)
    h, w = r1 - r0, c1 - c0
    if h <= 0 or w <= 0:
        raise LesionError(f"lesion bounding box {tuple(bbox)} is empty; check the lesion mask")
    side_h, side_w = (max(h, w), max(h, w)) if spec.square else (h, w)
    scale = 1.0 + 2.0 * float(spec.margin_fraction)
    out_h = max(side_h, math.floor(side_h * scale + 0.5))
    out_w = max(side_w, math.floor(side_w * scale + 0.5))
    # Integer centring: the box always contains the lesion; an odd extra pixel goes to the end.
    row0 = r0 - (out_h - h) // 2
    col0 = c0 - (out_w - w) // 2
    return (row0, row0 + out_h, col0, col0 + out_w)


def _bbox_from_mask(mask2d: np.ndarray) -> CropBox:
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    if rows.size == 0:
        raise LesionError("the lesion mask is empty; delineate the lesion before computing features")
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def _padded_window(image2d: np.ndarray, box: CropBox) -> np.ndarray:
    """The image inside ``box``, zeros where the box leaves the image (no shifting)."""
    r0, r1, c0, c1 = box
    rows, cols = image2d.shape
    out = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if sr0 < sr1 and sc0 < sc1:
        out[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = image2d[sr0:sr1, sc0:sc1]
    return out


def zscore(crop: np.ndarray) -> np.ndarray:
    """Per-image z-score; a constant image becomes all zeros.

    Args:
        crop: 2D array.

    Returns:
        float32 array with mean 0 and standard deviation 1 (or all zeros).
    """
    values = np.asarray(crop, dtype=np.float64)
    mean, std = values.mean(), values.std()
    if not np.isfinite(std) or std < 1e-6:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - mean) / std).astype(np.float32)


def crop_from_arrays(
    image2d: np.ndarray,
    mask2d: np.ndarray | None,
    bbox: CropBox | None,
    spec: CropSpec,
) -> tuple[np.ndarray, CropBox]:
    """Normalised lesion crop from plain arrays (the training and inference path alike).

    Args:
        image2d: (rows, cols) luminance.
        mask2d: (rows, cols) lesion mask; used only to find the box when ``bbox`` is None.
        bbox: lesion box (row0, row1, col0, col1), end-exclusive, or None to take it from the mask.
        spec: margin, output size, squareness.

    Returns:
        (crop, box): float32 (size, size) z-scored crop, and the crop box in slice coordinates.

    Raises:
        InputError: image not 2D or not finite, or mask of another shape.
        LesionError: no box given and the mask is empty.
    """
    image = np.asarray(image2d)
    if image.ndim != 2:
        raise InputError(f"a lesion crop needs a 2D image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InputError("the image contains NaN or infinite values; check the image file")
    if bbox is None:
        if mask2d is None:
            raise LesionError("no lesion mask or bounding box was given for the crop")
        mask = np.asarray(mask2d)
        if mask.shape != image.shape:
            raise InputError(f"lesion mask shape {mask.shape} differs from image shape {image.shape}")
        bbox = _bbox_from_mask(mask != 0)
    box = lesion_crop_box(bbox, spec)
    window = _padded_window(image, box)
    crop = resize_bilinear(window, (int(spec.size), int(spec.size)))
    return zscore(crop), box


def lesion_crop(lesion: LesionSlice, spec: CropSpec | None = None) -> tuple[np.ndarray, CropBox]:
    """Normalised square crop around a lesion, ready for :class:`DeepModel`.

    Args:
        lesion: the representative slice with its mask and bounding box.
        spec: crop settings; defaults to ``CropSpec()`` (15 % margin, 224 px).

    Returns:
        (crop, box): float32 (size, size) z-scored crop, and the crop box
        (row0, row1, col0, col1) in slice coordinates (may extend beyond the image).

    Raises:
        InputError, LesionError: unusable image or lesion box.
    """
    return crop_from_arrays(lesion.image, lesion.mask, lesion.bbox, spec or CropSpec())


# --------------------------------------------------------------------------- weights I/O


def _as_numpy(value: Any) -> np.ndarray:
    """A tensor (torch, on any device) or array as a numpy array, without importing torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _state_arrays(module_or_model: Any) -> dict[str, np.ndarray]:
    if isinstance(module_or_model, DeepModel):
        return dict(module_or_model.tensors)
    # A copy: a snapshot of the weights, whatever later happens to the module.
    return {k: np.array(_as_numpy(v), order="C") for k, v in module_or_model.state_dict().items()}


def save_safetensors(
    model: DeepModel | torch.nn.Module,
    path: str | Path,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a network's weights (state dict tensors only) as a safetensors file.

    Args:
        model: a :class:`DeepModel` or a torch module.
        path: destination file.
        metadata: extra string key/values stored in the file header.

    Returns:
        The path written.
    """
    from safetensors.numpy import save_file

    meta = {"format": WEIGHTS_FORMAT}
    if isinstance(model, DeepModel):
        meta.update(arch=model.arch, in_channels=str(model.in_channels), num_classes=str(model.num_classes))
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_state_arrays(model), str(path), metadata=meta)
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
        BundleError: the tensors do not fit the declared network (see ``resnet_numpy.check_tensors``).
    """
    import torch

    from .resnet_numpy import check_tensors

    arrays = check_tensors(
        {k: _as_numpy(v) for k, v in tensors.items()}, arch, in_channels, num_classes, source
    )
    state = net.state_dict()
    # np.array copies: safetensors' arrays are read-only, which torch.from_numpy warns about.
    net.load_state_dict({k: torch.from_numpy(np.array(v)).to(state[k].dtype) for k, v in arrays.items()})


# --------------------------------------------------------------------------- model


class DeepModel:
    """A trained ResNet applied in eval mode: average-pool features, class-1 probability, Grad-CAM.

    Inference runs in numpy (:class:`resnet_numpy.ResNetInference`): applying a bundle never
    imports torch. The torch network (:attr:`network`) is built from the same weights only when
    asked for (training code, tests comparing with torch).

    Args:
        weights: the network's ``state_dict`` tensors (numpy arrays or torch tensors), or a
            torch ResNet (as built by :func:`build_resnet`) whose weights are taken.
        arch: its architecture name.
        in_channels: input channels (1 for grayscale).
        num_classes: outputs of the fc head.
        batch_size: crops per forward pass in :meth:`features` / :meth:`probabilities` (fewer
            for crops larger than 96 px, see ``resnet_numpy.CHUNK_PIXELS``).
        source: where the weights came from, for error messages.

    Raises:
        ConfigError: unknown architecture.
        BundleError: the weights do not fit the declared network.
    """

    def __init__(
        self,
        weights: Mapping[str, Any] | torch.nn.Module,
        arch: str,
        in_channels: int = 1,
        num_classes: int = 2,
        batch_size: int = 32,
        *,
        source: str = "",
    ) -> None:
        from .resnet_numpy import ResNetInference

        _check_arch(arch)
        self._network: Any = None
        if isinstance(weights, Mapping):
            tensors = {str(k): np.asarray(_as_numpy(v), order="C") for k, v in weights.items()}
        else:  # a torch module: a snapshot of its weights, and the module for :attr:`network`
            self._network = _frozen(weights)
            tensors = _state_arrays(weights)
        self.engine = ResNetInference(
            tensors, arch, in_channels, num_classes, source or f"the given {arch} state dict"
        )
        #: The weights as stored (what :func:`save_safetensors` writes).
        self.tensors = tensors
        self.arch = arch
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.batch_size = max(1, int(batch_size))

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector."""
        return FEATURE_DIMS[self.arch]

    @property
    def network(self) -> torch.nn.Module:
        """The same weights as a torch ResNet in eval mode, gradients off (imports torch)."""
        if self._network is None:
            net = build_resnet(self.arch, self.num_classes, self.in_channels, initialise=False)
            load_weights(net, self.tensors, self.arch, self.in_channels, self.num_classes, source="the model")
            self._network = _frozen(net)
        return self._network

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        arch: str,
        in_channels: int = 1,
        num_classes: int = 2,
    ) -> DeepModel:
        """The model of these tensors (torch or numpy), validated against the architecture.

        Raises:
            ConfigError: unknown architecture.
            BundleError: names or shapes do not match the architecture.
        """
        return cls(state_dict, arch, in_channels=in_channels, num_classes=num_classes)

    @classmethod
    def from_safetensors(
        cls,
        path: str | Path,
        arch: str,
        in_channels: int = 1,
        num_classes: int = 2,
    ) -> DeepModel:
        """Load weights from a safetensors file (no code is executed while loading).

        Args:
            path: the weights file.
            arch: declared architecture (checked against the file's header when present).
            in_channels: declared input channels.
            num_classes: declared fc outputs.

        Returns:
            The model.

        Raises:
            ConfigError: unknown architecture.
            BundleError: missing, unreadable or mismatching weights file.
        """
        from safetensors import safe_open

        _check_arch(arch)
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"CNN weights file {path} not found; reinstall the model bundle")
        try:
            with safe_open(str(path), framework="np") as f:
                header = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise BundleError(
                f"CNN weights file {path.name} is damaged or not a safetensors file ({exc}); "
                "reinstall the model bundle"
            ) from exc
        declared = header.get("arch")
        if declared is not None and declared != arch:
            raise BundleError(
                f"CNN weights file {path.name} holds a {declared} but the bundle declares {arch}"
            )
        return cls(tensors, arch, in_channels=in_channels, num_classes=num_classes, source=path.name)

    # ----------------------------------------------------------------- internals

    def _as_batch(self, crops: np.ndarray) -> np.ndarray:
        arr = np.asarray(crops, dtype=np.float32)
        if arr.ndim == 3 and self.in_channels == 1:
            arr = arr[:, None]
        if arr.ndim != 4 or arr.shape[1] != self.in_channels:
            raise InputError(
                f"crops must be (N, H, W) for 1 channel or (N, {self.in_channels}, H, W), "
                f"got shape {np.shape(crops)}"
            )
        if min(arr.shape[2:]) < MIN_CROP_SIZE:
            raise InputError(f"crops must be at least {MIN_CROP_SIZE} px, got {arr.shape[2:]}")
        if not np.all(np.isfinite(arr)):
            raise InputError("crops contain NaN or infinite values")
        return np.ascontiguousarray(arr)

    def features_and_probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Average-pool features and class-1 probabilities, in batches.

        Args:
            crops: (N, H, W) z-scored crops (or (N, C, H, W)).

        Returns:
            (features (N, D) float32, probabilities (N,) float64).

        Raises:
            InputError: wrong shape or non-finite values.
        """
        from .resnet_numpy import CHUNK_PIXELS

        arr = self._as_batch(crops)
        step = max(1, min(self.batch_size, CHUNK_PIXELS // (arr.shape[2] * arr.shape[3])))
        feats, probs = [], []
        with _threads_for(arr.shape[0]):
            for start in range(0, arr.shape[0], step):
                pooled, logits = self.engine.head(self.engine.trunk(arr[start : start + step]))
                feats.append(pooled)
                probs.append(_class1_probability(logits))
        if not feats:
            return np.zeros((0, self.feature_dim), np.float32), np.zeros(0)
        return np.concatenate(feats).astype(np.float32), np.concatenate(probs)

    def features(self, crops: np.ndarray) -> np.ndarray:
        """Global-average-pool feature vectors, shape (N, D)."""
        return self.features_and_probabilities(crops)[0]

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """Softmax probability of class 1 from the fc head, shape (N,)."""
        return self.features_and_probabilities(crops)[1]

    def features_and_gradcam(
        self, crop: np.ndarray, target_class: int = 1
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Features, Grad-CAM and class-1 probability of one crop in one forward pass.

        Grad-CAM is taken on layer4 (the last convolutional block): channel weights are the
        spatial mean of d logit[target] / d activation, which for the average pool and linear
        head is fc.weight[target] / cells, exactly (test_deep_features.py compares with torch's
        autograd); the map is ReLU(sum of weighted activations), upsampled bilinearly to the crop
        size (each layer4 cell centred on the input pixel its receptive field is centred on) and
        min-max scaled to [0, 1] (as in the reference Grad-CAM code).

        Args:
            crop: (H, W) z-scored crop (or (C, H, W)).
            target_class: class whose logit is explained.

        Returns:
            (features (D,) float32, cam (H, W) float32 in [0, 1], probability of class 1).
            A flat CAM (e.g. no positive evidence anywhere) is all zeros.

        Raises:
            InputError: wrong shape, non-finite values or target class out of range.
        """
        if not 0 <= int(target_class) < self.num_classes:
            raise InputError(f"target_class must be in 0..{self.num_classes - 1}, got {target_class}")
        arr = self._as_batch(np.asarray(crop)[None])
        with _threads_for(1):
            act = self.engine.trunk(arr)
        pooled, logits = self.engine.head(act)
        cells = act.shape[1] * act.shape[2]
        weights = self.engine.gradcam_weights(int(target_class), cells)
        cam = np.maximum(act[0].astype(np.float64) @ weights, 0.0)
        cam = _minmax(_upsample_to_input(cam, arr.shape[2], arr.shape[3]))
        return pooled[0].astype(np.float32), cam.astype(np.float32), float(_class1_probability(logits)[0])


def _threads_for(crops: int) -> AbstractContextManager:
    """One BLAS thread for a single crop, the library's own count for a batch.

    On one 96 px crop a second BLAS thread costs more than it saves (its hand-offs and spinning:
    bench_predict's network stage took a median 43 ms with two threads, 19 ms with one, runs
    minutes apart on the 2 shared cores here), and one thread gives a crop the same digits
    whoever calls (the prediction, the batch workers, a console user).
    Batches (training features) keep every thread: 9-13 instead of 13-19 ms per crop for a
    batch of 32 on 2 cores (4 alternating repeats).
    """
    from ..base.thread_limits import BLAS_ONE_THREAD

    return BLAS_ONE_THREAD.held() if crops == 1 else nullcontext()


def _frozen(network: Any) -> Any:
    """The network in eval mode with gradients off (inference only)."""
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


def _class1_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of class 1, in float64."""
    from ..base.numeric import softmax

    return softmax(logits, axis=1)[:, 1]


def _interp_matrix(n_out: int, n_cells: int) -> np.ndarray:
    """(n_out, n_cells) linear interpolation weights with cell j centred on pixel 32 * j."""
    pos = np.clip(np.arange(n_out, dtype=np.float64) / RESNET_STRIDE, 0.0, n_cells - 1.0)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, n_cells - 1)
    frac = pos - low
    weights = np.zeros((n_out, n_cells), dtype=np.float64)
    np.add.at(weights, (np.arange(n_out), low), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return weights


def _upsample_to_input(cam: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear upsampling of a layer4 map to the input grid, aligned with the network.

    In a torchvision ResNet every stride-2 stage keeps output j centred on input 2j, so layer4
    cell j is centred on input pixel 32j. A plain resize would centre it on 32j + 15.5 and shift
    the heatmap by half a cell towards the bottom right; this places each cell where its
    receptive field is centred and holds the edge values beyond the outermost centres.
    """
    wr = _interp_matrix(rows, cam.shape[0])
    wc = _interp_matrix(cols, cam.shape[1])
    return wr @ np.asarray(cam, dtype=np.float64) @ wc.T


def _minmax(cam: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] as in the reference Grad-CAM code; a flat map becomes zeros."""
    low, high = float(cam.min()), float(cam.max())
    span = high - low
    if not (math.isfinite(span) and span > 1e-12 * max(1.0, abs(high))):
        return np.zeros_like(cam)
    return np.clip((cam - low) / span, 0.0, 1.0)


# --------------------------------------------------------------------------- heatmaps


def heatmap_to_slice(cam: np.ndarray, crop_box: CropBox, slice_shape: tuple[int, int]) -> np.ndarray:
    """Place a crop-sized CAM back into the slice grid.

    Args:
        cam: (h, w) map over the crop.
        crop_box: (row0, row1, col0, col1) the crop was cut from, possibly beyond the image.
        slice_shape: (rows, cols) of the slice.

    Returns:
        float32 (rows, cols): the CAM resized to the box, zeros outside it; parts of the box
        outside the image are dropped.

    Raises:
        InputError: CAM not 2D/finite, empty box or bad slice shape.
    """
    cam_arr = np.asarray(cam, dtype=np.float32)
    if cam_arr.ndim != 2 or not np.all(np.isfinite(cam_arr)):
        raise InputError(f"a heatmap must be a finite 2D array, got shape {cam_arr.shape}")
    if len(slice_shape) != 2 or min(int(s) for s in slice_shape) <= 0:
        raise InputError(f"slice shape must be (rows, cols) > 0, got {tuple(slice_shape)}")
    r0, r1, c0, c1 = (int(v) for v in crop_box)
    if r1 <= r0 or c1 <= c0:
        raise InputError(f"heatmap crop box {tuple(crop_box)} is empty")
    rows, cols = (int(s) for s in slice_shape)
    out = np.zeros((rows, cols), dtype=np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if sr0 >= sr1 or sc0 >= sc1:
        return out  # the box lies entirely outside the image
    resized = resize_bilinear(cam_arr, (r1 - r0, c1 - c0))
    out[sr0:sr1, sc0:sc1] = resized[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0]
    return out


def heatmap_volume(cam_slice: np.ndarray, volume_shape: tuple[int, int, int], slice_index: int) -> np.ndarray:
    """A (k, j, i) volume that is zero except for the heatmap at ``slice_index``.

    Args:
        cam_slice: (rows, cols) heatmap in the slice grid.
        volume_shape: (slices, rows, cols) of the image volume.
        slice_index: k of the representative slice.

    Returns:
        float32 volume of ``volume_shape``.

    Raises:
        InputError: shapes disagree or the index is out of range.
    """
    k, j, i = (int(s) for s in volume_shape)
    cam_arr = np.asarray(cam_slice, dtype=np.float32)
    if cam_arr.shape != (j, i):
        raise InputError(f"heatmap shape {cam_arr.shape} differs from the image slice shape {(j, i)}")
    if not 0 <= int(slice_index) < k:
        raise InputError(f"slice index {slice_index} is outside the volume's {k} slices")
    vol = np.zeros((k, j, i), dtype=np.float32)
    vol[int(slice_index)] = cam_arr
    return vol
