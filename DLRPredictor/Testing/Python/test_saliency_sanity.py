"""Sanity checks of the heatmap (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

Model-parameter randomisation on the shipped bundle: the DL-signature map of trained weights is
compared with the map after re-initialising the network cascading from the top (layer4, then
layer3, ... down to the stem, each stage keeping the ones above randomised) and after replacing
the signature's weights w_eff by random ones. A map that survived these would explain the input,
not the model. Similarity is Spearman's rank correlation and SSIM over the crop-sized map (the
map the user sees), summarised by the median over the crops. A small input perturbation (noise
of sd 0.05 on the z-scored crop) is the contrast: it must leave the map nearly unchanged, so the
thresholds separate "the model changed" from "the map is noisy".

Measured on the shipped bundle (docs/EXPERIMENTS.md): cascade medians rho -0.47..0.44 and SSIM
-0.05..0.37 on 8 phantom crops, rho -0.17..0.40 and SSIM -0.01..0.21 on 8 BUS-BRA crops; random
w_eff rho -0.47 / -0.30; noise rho 1.00. Thresholds: rho < 0.6, SSIM < 0.5, noise rho > 0.95.
"""

from __future__ import annotations

import numpy as np
import pytest
from DLRPredictorLib.deep.deep_model import DeepModel, build_resnet
from DLRPredictorLib.deep.heatmap import weighted_cam
from DLRPredictorLib.deep.weights import state_arrays
from DLRPredictorLib.inference.predictor import Predictor, load_predictor
from DLRPredictorLib.inputs import images, lesion, phantom
from DLRPredictorLib.inputs.crops import lesion_crop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_CROPS = 8
RHO_MAX = 0.6  # median Spearman of trained vs randomised maps must stay below
SSIM_MAX = 0.5  # median SSIM likewise
NOISE_RHO_MIN = 0.95  # a map must survive a small input perturbation
#: Cascading randomisation, top down: each stage re-initialises these top-level modules.
CASCADE = (
    ("layer4",),
    ("layer4", "layer3"),
    ("layer4", "layer3", "layer2"),
    ("layer4", "layer3", "layer2", "layer1"),
    ("layer4", "layer3", "layer2", "layer1", "conv1", "bn1"),
)


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return load_predictor()


@pytest.fixture(scope="module")
def fresh_tensors() -> dict[str, np.ndarray]:
    """A freshly initialised ResNet-18 (torchvision's initialisation, seeded)."""
    import torch

    torch.manual_seed(123)
    return state_arrays(build_resnet("resnet18"))


def _crop(pred: Predictor, volume, mask) -> np.ndarray:
    return lesion_crop(pred.lesion_slice(volume, mask), pred.pipeline.crop_spec())[0]


@pytest.fixture(scope="module", params=["phantom", "busbra"])
def crops(request, shipped: Predictor) -> tuple[str, list[np.ndarray]]:
    """8 lesion crops: synthetic phantoms, or real BUS-BRA images spread over the file (every 97th)."""
    if request.param == "phantom":
        return "phantom", [_crop(shipped, *phantom.make_phantom(seed)) for seed in range(N_CROPS)]
    cases = sorted(request.getfixturevalue("busbra_cases"), key=lambda c: c.case_id)[::97][:N_CROPS]
    out = []
    for case in cases:
        volume = images.read_image(case.image)
        out.append(_crop(shipped, volume, lesion.read_mask(case.mask, volume)))
    return "busbra", out


def _map(model: DeepModel, crop: np.ndarray, weights: np.ndarray) -> np.ndarray:
    _, act, _ = model.features_and_activations(crop)
    return weighted_cam(act, weights / (act.shape[0] * act.shape[1]), *crop.shape)


def _randomised(model: DeepModel, fresh: dict[str, np.ndarray], modules: tuple[str, ...]) -> DeepModel:
    tensors = {k: (fresh[k] if k.split(".")[0] in modules else v) for k, v in model.tensors.items()}
    return DeepModel(tensors, model.arch)


def _medians(first: list[np.ndarray], second: list[np.ndarray]) -> tuple[float, float]:
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    # A flat map (no positive evidence anywhere) has no rank agreement with any map: counted as 0.
    rho = [
        spearmanr(a.ravel(), b.ravel())[0] if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0
        for a, b in zip(first, second, strict=True)
    ]
    ssim = [structural_similarity(a, b, data_range=1.0) for a, b in zip(first, second, strict=True)]
    return float(np.median(rho)), float(np.median(ssim))


def test_map_survives_a_small_input_perturbation(shipped: Predictor, crops) -> None:
    _, batch = crops
    w = shipped.signature_affine().weights
    model = shipped.deep_model()
    rng = np.random.default_rng(0)
    trained = [_map(model, c, w) for c in batch]
    assert all(m.any() for m in trained)  # no flat map: rank correlations are defined
    noisy = [_map(model, c + 0.05 * rng.standard_normal(c.shape).astype(np.float32), w) for c in batch]
    rho, _ = _medians(trained, noisy)
    assert rho > NOISE_RHO_MIN


def test_cascading_network_randomisation_changes_the_map(shipped: Predictor, fresh_tensors, crops) -> None:
    source, batch = crops
    w = shipped.signature_affine().weights
    model = shipped.deep_model()
    trained = [_map(model, c, w) for c in batch]
    for modules in CASCADE:
        random_model = _randomised(model, fresh_tensors, modules)
        rho, ssim = _medians(trained, [_map(random_model, c, w) for c in batch])
        assert rho < RHO_MAX, f"{source}: randomising {modules} left the map rank-correlated ({rho:.2f})"
        assert ssim < SSIM_MAX, f"{source}: randomising {modules} left the map similar (SSIM {ssim:.2f})"


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
    np.testing.assert_array_equal(
        _map(model, crop, w), _map(_randomised(model, fresh_tensors, ("fc",)), crop, w)
    )
    # ... while the CNN-head map, which explains the head, moves.
    head = model.features_and_gradcam(crop)[1]
    assert not np.allclose(
        head, _randomised(model, fresh_tensors, ("fc",)).features_and_gradcam(crop)[1], atol=0.05
    )


def test_the_map_is_not_an_edge_detector(shipped: Predictor, crops) -> None:
    """The trained map does not follow the crop's smoothed gradient magnitude (what a map that only
    reflects the input would look like at layer4's resolution)."""
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
