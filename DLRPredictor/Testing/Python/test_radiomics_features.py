"""radiomics_features.py: parity with pyradiomics run directly, feature set, parameters, provenance."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from DLRPredictorLib.base.case import LesionSlice
from DLRPredictorLib.base.errors import ConfigError, LesionError
from DLRPredictorLib.features import radiomics as rf
from DLRPredictorLib.inputs.images import read_image
from DLRPredictorLib.inputs.lesion import MIN_LESION_PIXELS, bounding_box, read_mask, representative_slice
from DLRPredictorLib.inputs.phantom import make_phantom, write_phantom
from radiomics.featureextractor import RadiomicsFeatureExtractor

BUSBRA_PICKS = (0, 700, 1400)
BREAST_PICKS = (0, 120, 240)


@pytest.fixture(scope="module")
def direct_extractor() -> RadiomicsFeatureExtractor:
    """pyradiomics' own extractor built from the parameter file, as a user would run it."""
    return RadiomicsFeatureExtractor(str(rf.DEFAULT_PARAMETERS))


@pytest.fixture(scope="module")
def phantom_lesion() -> LesionSlice:
    volume, mask = make_phantom(seed=3)
    return representative_slice(volume, mask)


@pytest.fixture(scope="module")
def phantom_features(phantom_lesion) -> dict[str, float]:
    return rf.extract_features(phantom_lesion)


def _features_only(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


def _assert_same(ours: dict[str, float], theirs: dict[str, float]) -> None:
    assert list(ours) == list(theirs)
    np.testing.assert_allclose(
        np.array(list(ours.values())), np.array(list(theirs.values())), rtol=1e-9, atol=1e-12, equal_nan=True
    )


def _binary_mask_like(mask_path, image: sitk.Image, rgba: bool) -> sitk.Image:
    values = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path)))
    binary = np.any(values[..., :3] != 0, axis=-1) if rgba else values != 0
    mask = sitk.GetImageFromArray(binary.astype(np.uint8))
    mask.CopyInformation(image)
    return mask


# ---------------------------------------------------------------- parity with pyradiomics


def test_parity_on_phantom_files(tmp_path, direct_extractor):
    paths = write_phantom(tmp_path)
    image = sitk.ReadImage(str(paths["image_nrrd"]))  # uint8 with 0.1 mm spacing
    mask = sitk.ReadImage(str(paths["mask_nrrd"]))
    theirs = _features_only(direct_extractor.execute(image, mask))
    volume = read_image(paths["image_nrrd"])
    lesion = representative_slice(volume, read_mask(paths["mask_nrrd"], volume))
    _assert_same(rf.extract_features(lesion), theirs)


@pytest.mark.shared_data
@pytest.mark.parametrize("pick", BUSBRA_PICKS)
def test_parity_busbra(busbra_cases, direct_extractor, pick):
    case = busbra_cases[pick]
    # 8-bit grayscale PNG, spacing 1 mm. pyradiomics bins uint8 input with uint8 arithmetic (numpy 2
    # wraps max + 2 * binWidth); the picked cases stay clear of that, DLRPredictor passes doubles.
    image = sitk.ReadImage(str(case.image))
    theirs = _features_only(direct_extractor.execute(image, _binary_mask_like(case.mask, image, False)))
    volume = read_image(case.image)
    lesion = representative_slice(volume, read_mask(case.mask, volume), case.case_id)
    assert lesion.warnings == ()
    _assert_same(rf.extract_features(lesion), theirs)


@pytest.mark.shared_data
@pytest.mark.parametrize("pick", BREAST_PICKS)
def test_parity_breast_rgba(breast_cases, direct_extractor, pick):
    case = breast_cases[pick]
    rgba = sitk.GetArrayFromImage(sitk.ReadImage(str(case.image)))
    assert rgba.ndim == 3 and rgba.shape[-1] == 4
    # Luminance by hand (BT.601), kept in float32 as the ImageVolume contract says; pyradiomics is
    # given it in double precision, as it computes on an integer file.
    luminance = (rgba[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.float32)
    image = sitk.GetImageFromArray(luminance.astype(np.float64))
    image.SetSpacing((case.spacing_mm, case.spacing_mm))
    theirs = _features_only(direct_extractor.execute(image, _binary_mask_like(case.mask, image, True)))
    volume = read_image(case.image, spacing_mm=case.spacing_mm)
    lesion = representative_slice(volume, read_mask(case.mask, volume), case.case_id)
    assert lesion.warnings == ()
    assert lesion.spacing == pytest.approx((case.spacing_mm, case.spacing_mm))
    _assert_same(rf.extract_features(lesion), theirs)


# ------------------------------------------- the lesion window (Original-only parameter files)

ORIGINAL_ONLY = rf.DEFAULT_PARAMETERS.parents[1] / "Models" / "BreastUS-Malignancy" / "radiomics.yaml"


def _full_image_features(lesion: LesionSlice, params: dict) -> dict[str, float]:
    """pyradiomics on the whole slice, as it would run without DLRPredictor's lesion window."""
    image = sitk.GetImageFromArray(np.asarray(lesion.image, dtype=np.float64))
    image.SetSpacing(tuple(float(s) for s in lesion.spacing))
    mask = sitk.GetImageFromArray((np.asarray(lesion.mask) != 0).astype(np.uint8))
    mask.CopyInformation(image)
    return _features_only(RadiomicsFeatureExtractor(copy.deepcopy(params)).execute(image, mask))


def test_which_parameter_files_get_the_lesion_window():
    original = rf.load_parameters(ORIGINAL_ONLY)
    assert rf.lesion_window_is_exact(original)
    # Filters see the whole image, normalisation its statistics, resampling pads around the box.
    assert not rf.lesion_window_is_exact(rf.load_parameters())  # LoG, wavelet, ... in the default file
    normalised = copy.deepcopy(original)
    normalised["setting"]["normalize"] = True
    assert not rf.lesion_window_is_exact(normalised)
    resampled = copy.deepcopy(original)
    resampled["setting"]["resampledPixelSpacing"] = [0.5, 0.5]
    assert not rf.lesion_window_is_exact(resampled)


def test_lesion_window_gives_the_whole_image_features_on_phantoms(monkeypatch):
    params = rf.load_parameters(ORIGINAL_ONLY)
    extractor = rf._extractor(params)
    sizes: list[tuple[int, int]] = []
    original = extractor.execute

    def spy(image, mask, **kwargs):
        sizes.append(image.GetSize())
        return original(image, mask, **kwargs)

    monkeypatch.setattr(extractor, "execute", spy)
    for seed, (rows, cols) in ((3, (256, 320)), (8, (180, 140))):
        volume, mask = make_phantom(seed=seed, shape=(rows, cols))
        lesion = representative_slice(volume, mask)
        # Lesions touching the image border too: the window is clipped to the image.
        touching = np.zeros_like(lesion.mask)
        touching[: rows // 3, cols // 2 :] = 1
        for m in (lesion.mask, touching):
            case = LesionSlice(
                image=lesion.image, mask=m, spacing=lesion.spacing, slice_index=0, bbox=(0, 0, 0, 0)
            )
            ours = rf.extract_features(case, params)
            theirs = _full_image_features(case, params)
            assert list(ours) == list(theirs)
            # The same numbers to the last bit: pyradiomics crops image and mask to the mask's bounding
            # box before any feature class (rf.lesion_window_is_exact), so the same code then runs on
            # the same pixels whichever window it was handed.
            assert ours == theirs
            # pyradiomics really was given the bounding box + 1 px (SimpleITK sizes are (x, y)).
            row0, row1, col0, col1 = bounding_box(m)
            expected = (min(cols, col1 + 1) - max(0, col0 - 1), min(rows, row1 + 1) - max(0, row0 - 1))
            assert sizes[-1] == expected and expected != (cols, rows)


@pytest.mark.shared_data
@pytest.mark.parametrize("pick", BUSBRA_PICKS)
def test_lesion_window_gives_the_whole_image_features_busbra(busbra_cases, pick):
    params = rf.load_parameters(ORIGINAL_ONLY)
    case = busbra_cases[pick]
    volume = read_image(case.image)
    lesion = representative_slice(volume, read_mask(case.mask, volume), case.case_id)
    assert np.count_nonzero(lesion.mask) < lesion.mask.size / 4  # the window really is smaller
    # Bit-identical for the reason given in the phantom test above.
    assert rf.extract_features(lesion, params) == _full_image_features(lesion, params)


# ---------------------------------------------------------------- the feature set


def test_feature_count_is_what_the_parameter_file_implies(phantom_features):
    with open(rf.DEFAULT_PARAMETERS, encoding="utf-8") as handle:
        params = yaml.safe_load(handle)
    image_types = 0
    for name, settings in params["imageType"].items():
        if name == "Wavelet":
            image_types += 4  # LL, LH, HL, HH on a true 2D image
        elif name == "LoG":
            image_types += len(settings["sigma"])
        else:
            image_types += 1
    classes = params["featureClass"]
    per_image = sum(len(names) for cls, names in classes.items() if cls != "shape2D")
    expected = image_types * per_image + len(classes["shape2D"])
    assert all(len(names) > 0 for names in classes.values())  # an empty list would enable everything
    assert expected > 1000
    assert len(phantom_features) == expected
    assert not any(k.startswith("diagnostics_") for k in phantom_features)
    wavelets = {k.split("_")[0] for k in phantom_features if k.startswith("wavelet")}
    assert wavelets == {"wavelet-LL", "wavelet-LH", "wavelet-HL", "wavelet-HH"}
    for key in (
        "original_shape2D_PixelSurface",
        "lbp-2D_glcm_Contrast",
        "log-sigma-3-0-mm-3D_glszm_ZoneEntropy",
    ):
        assert key in phantom_features
    assert all(isinstance(v, float) for v in phantom_features.values())


def test_geometry_and_intensity_reach_pyradiomics(phantom_lesion, phantom_features):
    pixels = int(phantom_lesion.mask.sum())
    area = pixels * phantom_lesion.spacing[0] * phantom_lesion.spacing[1]
    assert phantom_features["original_shape2D_PixelSurface"] == pytest.approx(area, rel=1e-9)
    inside = phantom_lesion.image[phantom_lesion.mask > 0].astype(np.float64)
    assert phantom_features["original_firstorder_Mean"] == pytest.approx(inside.mean(), rel=1e-9)


def test_custom_parameters_and_extractor_cache(phantom_lesion):
    params = {
        "setting": {"binWidth": 25, "label": 1},
        "imageType": {"Original": {}},
        "featureClass": {"firstorder": ["Mean", "Maximum"]},
    }
    features = rf.extract_features(phantom_lesion, params)
    assert list(features) == ["original_firstorder_Mean", "original_firstorder_Maximum"]
    # Exact: a maximum selects one of the pixel values, no rounding.
    assert features["original_firstorder_Maximum"] == float(
        phantom_lesion.image[phantom_lesion.mask > 0].max()
    )
    assert rf._extractor(params) is rf._extractor(copy.deepcopy(params))


def test_pyradiomics_rejection_becomes_lesion_error():
    image = np.random.default_rng(0).integers(0, 255, (40, 40)).astype(np.float32)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:14, 10:14] = 1  # 16 pixels, below the parameter file's minimumROISize
    lesion = LesionSlice(image=image, mask=mask, spacing=(0.1, 0.1), slice_index=0, bbox=(10, 14, 10, 14))
    with pytest.raises(LesionError, match=f"at least {MIN_LESION_PIXELS} pixels"):
        rf.extract_features(lesion)


# ---------------------------------------------------------------- parameters


def test_default_parameters_valid_and_consistent_with_lesion_minimum():
    params = rf.load_parameters()
    assert params["setting"]["minimumROISize"] == MIN_LESION_PIXELS
    assert params["setting"]["force2D"] is False
    assert "resampledPixelSpacing" not in params["setting"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("setting:\n  binWidth: -1\n", "binWidth"),
        ("featureClass:\n  glcm: [Contrast, Foo]\n", "Foo"),
        ("imageType:\n  Sharpen: {}\n", "Sharpen"),
        ("setting: [unclosed\n", "cannot read"),
        ("", "non-empty"),
    ],
)
def test_invalid_parameter_files(tmp_path, text, pattern):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        rf.load_parameters(path)


def test_missing_parameter_file(tmp_path):
    with pytest.raises(ConfigError, match=r"absent\.yaml"):
        rf.load_parameters(tmp_path / "absent.yaml")


def test_invalid_parameter_dict_in_extraction(phantom_lesion):
    with pytest.raises(ConfigError, match="binWidth"):
        rf.extract_features(phantom_lesion, {"setting": {"binWidth": 0}})


def test_parameters_hash_is_canonical():
    a = {"setting": {"binWidth": 5, "label": 1}, "imageType": {"Original": {}}}
    b = {"imageType": {"Original": {}}, "setting": {"label": 1, "binWidth": 5}}
    assert rf.parameters_hash(a) == rf.parameters_hash(b)
    assert len(rf.parameters_hash(a)) == 64
    b["setting"]["binWidth"] = 6
    assert rf.parameters_hash(a) != rf.parameters_hash(b)


# ---------------------------------------------------------------- rows and provenance


def test_feature_rows_split_like_slicer_radiomics():
    features = {
        "original_shape2D_Elongation": 0.5,
        "wavelet-LH_glcm_Contrast": 2.0,
        "log-sigma-1-0-mm-3D_firstorder_10Percentile": 3.0,
        "lbp-2D_ngtdm_Busyness": 4.0,
    }
    assert rf.feature_rows(features) == [  # the values are passed through: exact
        ("original", "shape2D", "Elongation", 0.5),
        ("wavelet-LH", "glcm", "Contrast", 2.0),
        ("log-sigma-1-0-mm-3D", "firstorder", "10Percentile", 3.0),
        ("lbp-2D", "ngtdm", "Busyness", 4.0),
    ]


def test_provenance_versions_and_hashes(tmp_path, phantom_lesion):
    import pywt
    import radiomics

    info = rf.provenance(phantom_lesion)
    assert info["pyradiomics_version"] == radiomics.__version__
    assert info["numpy_version"] == np.__version__
    assert info["simpleitk_version"] == sitk.Version_VersionString()
    assert info["pywavelets_version"] == pywt.__version__
    assert info["radiomics_parameters_sha256"] == rf.parameters_hash(rf.load_parameters())
    expected = hashlib.sha256(phantom_lesion.image.astype(np.float32).tobytes()).hexdigest()
    assert info["image_sha256"] == expected
    changed = copy.deepcopy(phantom_lesion)
    changed.mask[changed.bbox[0], changed.bbox[2]] ^= 1
    assert rf.provenance(changed)["mask_sha256"] != info["mask_sha256"]
    assert rf.provenance(changed)["image_sha256"] == info["image_sha256"]
    assert all(isinstance(v, str) for v in info.values())

    paths = write_phantom(tmp_path / "secret_patient_folder")
    volume = read_image(paths["image_png"], spacing_mm=0.1)
    lesion = representative_slice(volume, read_mask(paths["mask_png"], volume))
    assert not any("secret_patient" in value or "/" in value for value in rf.provenance(lesion).values())


def test_extraction_runs_simpleitk_single_threaded_and_restores_the_setting(phantom_lesion, monkeypatch):
    import threading

    params = rf.load_parameters(ORIGINAL_ONLY)
    extractor = rf._extractor(params)
    seen: list[int] = []
    original = extractor.execute

    def spy(*args, **kwargs):
        seen.append(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
        return original(*args, **kwargs)

    monkeypatch.setattr(extractor, "execute", spy)
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(3)
    try:
        reference = rf.extract_features(phantom_lesion, params)
        # Overlapping extractions from several threads share one saved value.
        results: list[dict[str, float]] = []
        threads = [
            threading.Thread(target=lambda: results.append(rf.extract_features(phantom_lesion, params)))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [1, 1, 1, 1]
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3  # the process's setting is back
        # Bit-identical: the same extraction, on one SimpleITK thread in each caller.
        assert all(r == reference for r in results)
        # An extraction that fails restores it too.
        with pytest.raises(LesionError):
            rf.extract_features(
                LesionSlice(
                    image=phantom_lesion.image,
                    mask=np.zeros_like(phantom_lesion.mask),
                    spacing=phantom_lesion.spacing,
                    slice_index=0,
                    bbox=(0, 0, 0, 0),
                ),
                params,
            )
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)
