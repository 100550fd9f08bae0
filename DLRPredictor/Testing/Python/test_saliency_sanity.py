"""Sanity checks of the heatmap (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

Model-parameter randomisation on the shipped bundle, whatever its backbone: the DL-signature map
of trained weights is compared with the map after re-initialising the network cascading from the
top, one resolution stage at a time (``backbones.feature_stages``: a ResNet's layer4, layer3, ...
down to the stem; an EfficientNet-Lite's blocks at stride 32 with its head, then stride 16, ...),
each stage keeping the ones above randomised, and after replacing the signature's weights w_eff
by random ones. A map that survived these would explain the input, not the model. Similarity is
Spearman's rank correlation and SSIM over the crop-sized map (the map the user sees), summarised
by the median over the crops (and, for the network, over three fresh initialisations: one draw
can land near a threshold). A small input perturbation (noise of sd 0.05 on the z-scored crop)
is the contrast: it must leave the map nearly unchanged, so the thresholds separate "the model
changed" from "the map is noisy".

Only crops whose trained map shows positive evidence are compared: a crop the signature scores
clearly benign can have no positive cell (a flat map, all zeros) or only a trace that min-max
scaling stretches to full range and that input noise reshuffles (docs/EXPERIMENTS.md, section 13);
counting such a crop as "changed" would let a randomisation pass for free.

Thresholds: rho < 0.6, SSIM < 0.5 for every change of the model; noise rho > 0.85 (ResNet-18
bundle: > 0.95 held, 1.00 measured; the EfficientNet-Lite0 bundle's maps of real images are less
stable on crops with little positive evidence). Measured figures are in docs/EXPERIMENTS.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from DLRPredictorLib.deep.backbones import ARCHITECTURES, feature_stages
from DLRPredictorLib.deep.deep_model import DeepModel, build_resnet
from DLRPredictorLib.deep.engines import expected_shapes
from DLRPredictorLib.deep.heatmap import weighted_cam
from DLRPredictorLib.deep.weights import state_arrays
from DLRPredictorLib.inference.predictor import Predictor, load_predictor
from DLRPredictorLib.inputs import images, lesion, phantom
from DLRPredictorLib.inputs.crops import lesion_crop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_CROPS = 8
MIN_MAPS = N_CROPS // 2  # crops with positive evidence needed for a median to mean something
RHO_MAX = 0.6  # median Spearman of trained vs randomised maps must stay below
SSIM_MAX = 0.5  # median SSIM likewise
NOISE_RHO_MIN = 0.85  # a map must survive a small input perturbation (well above RHO_MAX)
FRESH_SEEDS = (123, 124, 125)


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return load_predictor()


@pytest.fixture(scope="module")
def fresh_tensors(shipped: Predictor) -> list[dict[str, np.ndarray]]:
    """Freshly initialised networks of the shipped backbone (the library's initialisation, seeded)."""
    import torch

    out = []
    for seed in FRESH_SEEDS:
        torch.manual_seed(seed)
        out.append(state_arrays(build_resnet(shipped.deep_model().arch)))
    return out


def _crop(pred: Predictor, volume, mask) -> np.ndarray:
    return lesion_crop(pred.lesion_slice(volume, mask), pred.pipeline.crop_spec())[0]


@pytest.fixture(scope="module", params=["phantom", "busbra"])
def crops(request, shipped: Predictor) -> tuple[str, list[np.ndarray]]:
    """8 lesion crops whose trained map shows positive evidence: from 8 synthetic phantoms, or from
    8 real BUS-BRA images spread over the file (every 97th)."""
    if request.param == "phantom":
        batch = [_crop(shipped, *phantom.make_phantom(seed)) for seed in range(N_CROPS)]
    else:
        cases = sorted(request.getfixturevalue("busbra_cases"), key=lambda c: c.case_id)[::97][:N_CROPS]
        batch = []
        for case in cases:
            volume = images.read_image(case.image)
            batch.append(_crop(shipped, volume, lesion.read_mask(case.mask, volume)))
    w = shipped.signature_affine().weights
    shown = [c for c in batch if _map(shipped.deep_model(), c, w).any()]
    assert len(shown) >= MIN_MAPS, f"{request.param}: only {len(shown)} of {N_CROPS} maps are not flat"
    return request.param, shown


def _map(model: DeepModel, crop: np.ndarray, weights: np.ndarray) -> np.ndarray:
    _, act, _ = model.features_and_activations(crop)
    return weighted_cam(act, weights / (act.shape[0] * act.shape[1]), *crop.shape)


def _randomised(model: DeepModel, fresh: dict[str, np.ndarray], prefixes: tuple[str, ...]) -> DeepModel:
    def chosen(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    return DeepModel({k: (fresh[k] if chosen(k) else v) for k, v in model.tensors.items()}, model.arch)


def _cascade(arch: str) -> list[tuple[str, ...]]:
    """Top down: the last stage, then it and the one below, ... down to the whole trunk."""
    stages = feature_stages(arch)
    return [tuple(p for stage in stages[k:] for p in stage) for k in range(len(stages) - 1, -1, -1)]


def _medians(first: list[np.ndarray], second: list[np.ndarray]) -> tuple[float, float]:
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    # A flat second map (no positive evidence left) has no rank agreement with any map: counted as 0.
    rho = [
        spearmanr(a.ravel(), b.ravel())[0] if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0
        for a, b in zip(first, second, strict=True)
    ]
    ssim = [structural_similarity(a, b, data_range=1.0) for a, b in zip(first, second, strict=True)]
    return float(np.median(rho)), float(np.median(ssim))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_feature_stages_partition_the_trunk(arch: str) -> None:
    """Every weight but the classifier's lies in exactly one stage, and the stages descend by
    stride: 5 of them (output strides 2 to 32) in every backbone here."""
    names = [n for n in expected_shapes(arch) if not n.startswith("fc.")]
    stages = feature_stages(arch)
    assert len(stages) == 5
    for name in names:
        owners = [s for s in stages if any(name == p or name.startswith(p + ".") for p in s)]
        assert len(owners) == 1, f"{arch}: {name} lies in {len(owners)} stages"
    assert all(any(n == p or n.startswith(p + ".") for n in names) for s in stages for p in s)


def test_map_survives_a_small_input_perturbation(shipped: Predictor, crops) -> None:
    source, batch = crops
    w = shipped.signature_affine().weights
    model = shipped.deep_model()
    rng = np.random.default_rng(0)
    trained = [_map(model, c, w) for c in batch]
    noisy = [_map(model, c + 0.05 * rng.standard_normal(c.shape).astype(np.float32), w) for c in batch]
    rho, _ = _medians(trained, noisy)
    assert rho > NOISE_RHO_MIN, f"{source}: noise left a median rho of {rho:.2f}"


def test_cascading_network_randomisation_changes_the_map(shipped: Predictor, fresh_tensors, crops) -> None:
    source, batch = crops
    w = shipped.signature_affine().weights
    model = shipped.deep_model()
    trained = [_map(model, c, w) for c in batch]
    cascade = _cascade(model.arch)
    assert cascade[0] == feature_stages(model.arch)[-1]  # the stage whose activations the map weighs
    for prefixes in cascade:
        random_maps = [
            _map(_randomised(model, fresh, prefixes), c, w) for fresh in fresh_tensors for c in batch
        ]
        rho, ssim = _medians(trained * len(fresh_tensors), random_maps)
        top = f"{prefixes[0]}..{prefixes[-1]}"
        assert rho < RHO_MAX, f"{source}: randomising {top} left the map rank-correlated ({rho:.2f})"
        assert ssim < SSIM_MAX, f"{source}: randomising {top} left the map similar (SSIM {ssim:.2f})"


def test_random_signature_weights_change_the_map(shipped: Predictor, crops) -> None:
    source, batch = crops
    w = shipped.signature_affine().weights
    model = shipped.deep_model()
    random_w = np.random.default_rng(1).standard_normal(w.shape) * w.std()
    rho, ssim = _medians([_map(model, c, w) for c in batch], [_map(model, c, random_w) for c in batch])
    assert rho < RHO_MAX and ssim < SSIM_MAX, f"{source}: rho {rho:.2f}, SSIM {ssim:.2f}"


def test_the_map_ignores_the_head_it_does_not_explain(shipped: Predictor, fresh_tensors) -> None:
    """Re-initialising the fc head leaves the DL-signature map as it was (the head is not used):
    bit-identical, the same trunk on the same crop and weights."""
    crop = _crop(shipped, *phantom.make_phantom(0))
    w = shipped.signature_affine().weights
    model = shipped.deep_model()
    random_fc = _randomised(model, fresh_tensors[0], ("fc",))
    np.testing.assert_array_equal(_map(model, crop, w), _map(random_fc, crop, w))
    # ... while the CNN-head map, which explains the head, moves.
    head = model.features_and_gradcam(crop)[1]
    assert not np.allclose(head, random_fc.features_and_gradcam(crop)[1], atol=0.05)


def test_the_map_is_not_an_edge_detector(shipped: Predictor, crops) -> None:
    """The trained map does not follow the crop's smoothed gradient magnitude (what a map that only
    reflects the input would look like at the last stage's resolution)."""
    from scipy import ndimage

    source, batch = crops
    w = shipped.signature_affine().weights
    model = shipped.deep_model()
    edges = []
    for c in batch:
        magnitude = ndimage.gaussian_filter(np.hypot(ndimage.sobel(c, 0), ndimage.sobel(c, 1)), 16)
        edges.append((magnitude - magnitude.min()) / (magnitude.max() - magnitude.min()))
    rho, ssim = _medians([_map(model, c, w) for c in batch], edges)
    assert rho < RHO_MAX and ssim < SSIM_MAX, f"{source}: rho {rho:.2f}, SSIM {ssim:.2f}"
