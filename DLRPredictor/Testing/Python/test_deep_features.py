"""Deep features: ResNet builder, lesion crops, features, Grad-CAM, safetensors I/O, heatmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from DLRPredictorLib.base.case import LesionSlice
from DLRPredictorLib.base.errors import BundleError, ConfigError, InputError, LesionError
from DLRPredictorLib.deep.deep_model import ARCHITECTURES, DeepModel, build_resnet
from DLRPredictorLib.deep.heatmap import heatmap_to_slice, heatmap_volume
from DLRPredictorLib.deep.weights import save_safetensors
from DLRPredictorLib.inputs.crops import CropSpec, crop_from_arrays, lesion_crop, lesion_crop_box, zscore
from DLRPredictorLib.training.cnn import train_cnn
from DLRPredictorLib.training.cnn_config import CnnTrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _seeded_model(arch: str = "resnet18", seed: int = 0, in_channels: int = 1) -> DeepModel:
    import torch

    torch.manual_seed(seed)
    return DeepModel(build_resnet(arch, in_channels=in_channels), arch, in_channels=in_channels)


def _crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size)).astype(np.float32)


# --------------------------------------------------------------------------- builder and features


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(ConfigError) as err:
        build_resnet("vgg16")
    for arch in ARCHITECTURES:
        assert arch in str(err.value)


def test_grayscale_conv1_has_one_input_channel() -> None:
    net = build_resnet("resnet18", in_channels=1)
    assert tuple(net.conv1.weight.shape) == (64, 1, 7, 7)
    assert net.fc.out_features == 2


@pytest.mark.parametrize(("arch", "dim"), [("resnet18", 512), ("resnet50", 2048)])
def test_features_shape_determinism_and_batching(arch: str, dim: int) -> None:
    model = _seeded_model(arch)
    crops = _crops(3, 64)
    first = model.features(crops)
    assert first.shape == (3, dim)
    assert first.dtype == np.float32
    # Bit-identical: the same call twice (same batch, same BLAS threads, same kernels).
    np.testing.assert_array_equal(first, model.features(crops))
    single = np.concatenate([model.features(crops[i : i + 1]) for i in range(3)])
    # Batch size changes which BLAS kernels sum the convolutions (seen: 2e-6 on features ~1).
    np.testing.assert_allclose(single, first, rtol=1e-4, atol=1e-4)
    # different inputs give different features
    assert not np.allclose(first[0], first[1])


def test_probabilities_are_the_softmax_of_the_fc_head() -> None:
    model = _seeded_model()
    crops = _crops(4, 64, seed=1)
    feats, probs = model.features_and_probabilities(crops)
    w = model.network.fc.weight.detach().numpy().astype(np.float64)
    b = model.network.fc.bias.detach().numpy().astype(np.float64)
    logits = feats.astype(np.float64) @ w.T + b
    expected = 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    np.testing.assert_allclose(model.probabilities(crops), probs)


def test_bad_crop_input_raises_input_error() -> None:
    model = _seeded_model()
    with pytest.raises(InputError):
        model.features(np.zeros((64, 64), np.float32))  # missing batch axis
    bad = _crops(1, 64)
    bad[0, 3, 3] = np.nan
    with pytest.raises(InputError):
        model.features(bad)


# --------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _seeded_model(seed=3)
    path = save_safetensors(model, tmp_path / "cnn.safetensors")
    loaded = DeepModel.from_safetensors(path, "resnet18")
    crops = _crops(2, 64, seed=2)
    # Bit-identical: safetensors stores the float32 weights as they are, and the same numpy network
    # then runs on the same crops.
    np.testing.assert_array_equal(loaded.features(crops), model.features(crops))
    np.testing.assert_array_equal(loaded.probabilities(crops), model.probabilities(crops))
    # the loaded copy is not a fresh random network
    fresh = _seeded_model(seed=4)
    assert not np.allclose(fresh.features(crops), model.features(crops))


def test_architecture_mismatch_raises_bundle_error(tmp_path: Path) -> None:
    path = save_safetensors(_seeded_model(), tmp_path / "r18.safetensors")
    with pytest.raises(BundleError, match="resnet34"):
        DeepModel.from_safetensors(path, "resnet34")


def test_shape_mismatch_without_header_raises_bundle_error(tmp_path: Path) -> None:
    # A bare module (no arch header) with 3 input channels, declared as grayscale.
    path = save_safetensors(build_resnet("resnet18", in_channels=3), tmp_path / "rgb.safetensors")
    with pytest.raises(BundleError, match=r"conv1\.weight"):
        DeepModel.from_safetensors(path, "resnet18", in_channels=1)


def test_missing_or_damaged_weights_raise_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        DeepModel.from_safetensors(tmp_path / "absent.safetensors", "resnet18")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(BundleError, match="damaged"):
        DeepModel.from_safetensors(damaged, "resnet18")


def test_state_dict_with_missing_key_raises_bundle_error() -> None:
    state = dict(build_resnet("resnet18").state_dict())
    del state["fc.bias"]
    with pytest.raises(BundleError, match=r"fc\.bias"):
        DeepModel.from_state_dict(state, "resnet18")


# --------------------------------------------------------------------------- crops


def test_crop_box_is_square_centred_and_contains_the_lesion() -> None:
    # lesion 20 rows x 10 cols; side 20 * 1.3 = 26; 6 extra rows split 3/3, 16 extra cols 8/8
    assert lesion_crop_box((10, 30, 40, 50), CropSpec(margin_fraction=0.15)) == (7, 33, 32, 58)
    # non-square keeps each side's own margin: 20 * 1.5 = 30 rows (10 extra: 5/5),
    # 10 * 1.5 = 15 cols (5 extra: 2 before, the odd one after)
    box = lesion_crop_box((10, 30, 40, 50), CropSpec(margin_fraction=0.25, square=False))
    assert box == (5, 35, 38, 53)
    with pytest.raises(LesionError):
        lesion_crop_box((5, 5, 1, 9), CropSpec())


def test_crop_pads_with_zeros_outside_the_image_without_shifting() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((48, 50)) + 1.0).astype(np.float32)  # strictly positive, unlike padding
    spec = CropSpec(margin_fraction=0.2, size=56)  # side 40 * 1.4 = 56: no resampling
    crop, box = crop_from_arrays(image, None, (0, 40, 2, 42), spec)
    assert box == (-8, 48, -6, 50)
    expected = np.zeros((56, 56))
    expected[8:, 6:] = image
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(crop, expected, rtol=1e-5, atol=1e-5)


def test_lesion_stays_centred_near_the_border_after_resizing() -> None:
    rows, cols = np.mgrid[0:120, 0:160]
    mask = ((rows - 12) ** 2 + (cols - 148) ** 2 <= 10**2).astype(np.uint8)  # near top-right corner
    image = np.where(mask > 0, 200.0, 20.0).astype(np.float32)
    crop, box = crop_from_arrays(image, mask, None, CropSpec(margin_fraction=0.5, size=64))
    assert box[0] < 0 and box[3] > 160  # the box leaves the image on two sides
    bright = crop > crop.max() - 0.5 * (crop.max() - np.median(crop))
    centre = np.argwhere(bright).mean(axis=0)
    np.testing.assert_allclose(centre, (31.5, 31.5), atol=1.0)
    assert crop.shape == (64, 64) and crop.dtype == np.float32
    assert abs(float(crop.mean())) < 1e-4 and abs(float(crop.std()) - 1.0) < 1e-3


def test_lesion_crop_uses_the_slice_bbox_and_rejects_empty_masks() -> None:
    image = np.random.default_rng(1).random((80, 90)).astype(np.float32)
    mask = np.zeros((80, 90), np.uint8)
    mask[20:40, 30:55] = 1
    lesion = LesionSlice(image=image, mask=mask, spacing=(0.1, 0.1), slice_index=0, bbox=(20, 40, 30, 55))
    crop, box = lesion_crop(lesion, CropSpec(size=32))
    ref, ref_box = crop_from_arrays(image, mask, None, CropSpec(size=32))
    assert box == ref_box
    np.testing.assert_array_equal(crop, ref)  # exact: lesion_crop is crop_from_arrays on the same arrays
    with pytest.raises(LesionError, match="empty"):
        crop_from_arrays(image, np.zeros_like(mask), None, CropSpec(size=32))
    with pytest.raises(ConfigError):
        CropSpec(size=8)


def test_real_busbra_lesion_crop(busbra_cases) -> None:
    import SimpleITK as sitk

    case = busbra_cases[0]
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(case.image))).astype(np.float32)
    if image.ndim == 3:
        image = image.mean(axis=-1)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(case.mask)))
    mask = (mask[..., 0] if mask.ndim == 3 else mask) > 0
    crop, box = crop_from_arrays(image, mask, None, CropSpec(size=128))
    assert crop.shape == (128, 128) and np.isfinite(crop).all()
    rows = np.flatnonzero(mask.any(axis=1))
    assert box[0] <= rows[0] and box[1] >= rows[-1] + 1


# --------------------------------------------------------------------------- Grad-CAM


def test_gradcam_matches_features_and_is_in_unit_range() -> None:
    model = _seeded_model(seed=5)
    crop = _crops(1, 64, seed=6)[0]
    feats, cam, prob = model.features_and_gradcam(crop)
    np.testing.assert_allclose(feats, model.features(crop[None])[0], rtol=1e-4, atol=1e-5)
    assert prob == pytest.approx(float(model.probabilities(crop[None])[0]), rel=1e-6)
    assert cam.shape == (64, 64) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    assert cam.max() == pytest.approx(1.0)


def test_gradcam_equals_an_independent_hook_based_computation() -> None:
    import torch

    model = _seeded_model(seed=8)
    crop = _crops(1, 96, seed=9)[0]
    store = {}
    hook = model.network.layer4.register_forward_hook(lambda _m, _i, out: store.update(act=out))
    x = torch.from_numpy(crop[None, None]).requires_grad_(True)
    with torch.enable_grad():
        logits = model.network(x)  # torchvision's own forward, not the module's code path
        (grad,) = torch.autograd.grad(logits[0, 1], store["act"])
    hook.remove()
    raw = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["act"]).sum(dim=1))[0].detach().numpy()
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    _, cam, _ = model.features_and_gradcam(crop)
    # layer4 cell (i, j) is centred on input pixel (32 i, 32 j): the map there is the cell's value
    assert raw.shape == (3, 3)
    np.testing.assert_allclose(cam[::32, ::32], expected, atol=1e-5)


def test_gradcam_without_evidence_stays_zero() -> None:
    import torch

    torch.manual_seed(7)
    net = build_resnet("resnet18")
    with torch.no_grad():
        net.fc.weight.zero_()  # zero gradient: no channel has any weight
    model = DeepModel(net, "resnet18")
    _, cam, prob = model.features_and_gradcam(_crops(1, 64)[0])
    assert np.isfinite(cam).all()
    assert not cam.any()
    assert 0.0 < prob < 1.0


def _blob_images(n: int, seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Noise; class 1 adds a bright square centred near (32, 64): the top-right quadrant.

    At 96 px layer4 is a 3x3 grid of cells centred on pixels 0, 32 and 64; the square sits on
    cell (1, 2). A left-right flip would move it to the centre-left, an up-down flip to the
    bottom right and a transpose to the bottom left.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    b = size // 6
    for i in np.flatnonzero(y == 1):
        r, c = 32 - b // 2 + rng.integers(-4, 5), 64 - b // 2 + rng.integers(-4, 5)
        x[i, r : r + b, c : c + b] += 3.0
    return np.stack([zscore(img) for img in x]), y


@pytest.fixture(scope="module")
def blob_model() -> DeepModel:
    x, y = _blob_images(80, seed=0)
    config = CnnTrainConfig(
        input_size=96,
        epochs=4,
        batch_size=8,
        lr=1e-3,
        augment=False,
        warmup_epochs=0,
        seed=0,
        num_threads=1,
    )
    return train_cnn(x, y, config).model()


def _quadrant_mass(cam: np.ndarray) -> dict[str, float]:
    h, w = cam.shape[0] // 2, cam.shape[1] // 2
    return {
        "top-left": float(cam[:h, :w].mean()),
        "top-right": float(cam[:h, w:].mean()),
        "bottom-left": float(cam[h:, :w].mean()),
        "bottom-right": float(cam[h:, w:].mean()),
    }


@pytest.mark.slow
def test_gradcam_concentrates_on_the_decisive_corner(blob_model: DeepModel) -> None:
    x, y = _blob_images(12, seed=100)
    positives = x[y == 1]

    def mean_cam(images: np.ndarray) -> dict[str, float]:
        cams = []
        for crop in images:
            _, cam, _ = blob_model.features_and_gradcam(np.ascontiguousarray(crop), target_class=1)
            assert cam.min() >= 0.0 and cam.max() <= 1.0
            cams.append(cam)
        return _quadrant_mass(np.mean(cams, axis=0))

    assert (blob_model.probabilities(positives) > 0.5).all()  # the model has learnt the task
    m = mean_cam(positives)
    assert max(m, key=m.get) == "top-right", m
    # Moving the square moves the map the same way; a flipped or transposed map would not.
    mirrored = mean_cam(positives[:, :, ::-1])
    assert m["top-right"] + m["bottom-right"] > mirrored["top-right"] + mirrored["bottom-right"] + 0.05
    upside_down = mean_cam(positives[:, ::-1, :])
    assert m["top-left"] + m["top-right"] > upside_down["top-left"] + upside_down["top-right"]
    transposed = mean_cam(positives.transpose(0, 2, 1))
    assert m["top-right"] - m["bottom-left"] > transposed["top-right"] - transposed["bottom-left"]


# --------------------------------------------------------------------------- heatmaps


def test_heatmap_same_size_box_lands_pixel_exact() -> None:
    cam = np.zeros((32, 32), np.float32)
    cam[5, 27] = 1.0
    cam[20, 3] = 0.5
    out = heatmap_to_slice(cam, (10, 42, 60, 92), (80, 120))
    assert out.shape == (80, 120)
    assert out[15, 87] == 1.0 and out[30, 63] == 0.5  # a same-size resize is a copy: exact
    assert out.sum() == pytest.approx(1.5)


def test_heatmap_scaled_box_puts_the_hot_spot_at_the_right_place() -> None:
    cam = np.zeros((8, 8), np.float32)
    cam[1, 6] = 1.0  # upper right, asymmetric
    out = heatmap_to_slice(cam, (10, 42, 60, 92), (80, 120))  # 4x upsampling
    rows, cols = np.indices(out.shape)
    centroid = (float((rows * out).sum() / out.sum()), float((cols * out).sum() / out.sum()))
    # cam pixel centre (1.5, 6.5) * 4 - 0.5 + box origin
    assert centroid == pytest.approx((10 + 5.5, 60 + 25.5), abs=0.05)
    r, c = np.unravel_index(int(np.argmax(out)), out.shape)
    assert 14 <= r <= 17 and 84 <= c <= 87


def test_heatmap_box_beyond_the_border_is_clipped_not_shifted() -> None:
    cam = np.zeros((32, 32), np.float32)
    cam[20, 10] = 1.0  # inside the image after placement: (20 - 16, 100 + 10)
    cam[3, 25] = 0.7  # lands at (-13, 125): outside, must vanish
    out = heatmap_to_slice(cam, (-16, 16, 100, 132), (80, 120))
    assert out[4, 110] == 1.0  # a same-size resize is a copy: exact
    assert out.sum() == pytest.approx(1.0)
    assert not heatmap_to_slice(cam, (-50, -18, 0, 32), (80, 120)).any()


def test_heatmap_volume_places_the_slice_only() -> None:
    cam = np.random.default_rng(0).random((6, 7)).astype(np.float32)
    vol = heatmap_volume(cam, (4, 6, 7), 2)
    assert vol.shape == (4, 6, 7)
    np.testing.assert_array_equal(vol[2], cam)  # placed, not computed: exact
    assert not vol[[0, 1, 3]].any()
    with pytest.raises(InputError):
        heatmap_volume(cam, (4, 7, 6), 2)
    with pytest.raises(InputError):
        heatmap_volume(cam, (4, 6, 7), 4)
