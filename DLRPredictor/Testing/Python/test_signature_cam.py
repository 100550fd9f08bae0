"""The heatmap of the DL signature: its affine map of the pooled features, against the fitted
steps and against torch's autograd; the option between it and the CNN head's Grad-CAM.

The shipped bundle's DL signature is z-score -> PCA -> selection of components (z-scored again)
-> logistic regression: every step is affine, so its logit is f @ w_eff + b_eff for the D pooled
features f of its backbone (512 for a ResNet18, 1280 for an EfficientNet-Lite0), and its Grad-CAM
channel weights are w_eff / (h * w) on the last feature map (h x w cells of 32 crop pixels).
"""

from __future__ import annotations

import numpy as np
import pytest
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.base.numeric import expit
from DLRPredictorLib.deep.heatmap import HEATMAP_KINDS, heatmap_to_slice, weighted_cam
from DLRPredictorLib.inference.predictor import Predictor, load_predictor
from DLRPredictorLib.inputs import phantom
from DLRPredictorLib.inputs.crops import lesion_crop
from DLRPredictorLib.models.signature_linear import dl_signature_affine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return load_predictor()


def _phantom_crop(pred: Predictor, seed: int = 0) -> np.ndarray:
    volume, mask = phantom.make_phantom(seed)
    lesion = pred.lesion_slice(volume, mask)
    return lesion_crop(lesion, pred.pipeline.crop_spec())[0]


def _realistic_pooled(pred: Predictor, n: int, seed: int) -> np.ndarray:
    """Pooled vectors spread like the training features (the reducer's mean and std), >= 0 like ReLU."""
    reducer = pred.pipeline.reducer
    rng = np.random.default_rng(seed)
    return np.maximum(reducer.mean + 2.0 * reducer.std * rng.standard_normal((n, len(reducer.mean))), 0.0)


def test_shipped_dl_signature_is_affine_and_equals_the_fitted_steps(shipped: Predictor) -> None:
    pipe = shipped.pipeline
    assert type(pipe.dl.estimator).__name__ == "SafeLogisticRegression"
    affine = shipped.signature_affine()
    assert affine is not None and affine.weights.shape == (shipped.deep_model().feature_dim,)
    f = _realistic_pooled(shipped, 200, seed=1)
    # The fitted steps one after the other: PCA scores, selection + z-score, the LR's linear predictor.
    pcs = pipe.reducer.transform(f)
    z = pipe.dl.selector.transform(pcs, pipe.reducer.names)
    stepwise = pipe.dl.estimator.decision_function(z)
    assert np.ptp(stepwise) > 1.0  # the sample spans logit units, not one point
    # Composed in another order (float64 re-association only): agreement to 1e-9 in the logit.
    np.testing.assert_allclose(affine.logit(f), stepwise, rtol=0, atol=1e-9)
    # And the probability the user sees (the signature's predict_proba through the feature row).
    row = np.concatenate([np.zeros((len(f), len(pipe.radiomics_columns))), pcs], axis=1)
    names = [*pipe.radiomics_columns, *pipe.reducer.names]
    np.testing.assert_allclose(expit(affine.logit(f)), pipe.dl.predict_proba(row, names), rtol=0, atol=1e-12)


def test_the_prediction_s_dl_score_is_the_affine_map_of_its_features(shipped: Predictor) -> None:
    volume, mask = phantom.make_phantom(0)
    res = shipped.predict(volume, mask, {}, heatmap=False)
    crop = _phantom_crop(shipped)
    pooled = shipped.deep_model().features(crop[None])[0]
    # float32 features enter both computations; 1e-9 allows the float64 summation order.
    assert float(expit(shipped.signature_affine().logit(pooled))) == pytest.approx(
        res.signature_scores["dl"], abs=1e-9
    )


def _torch_gradcam(pred: Predictor, crop: np.ndarray, weights: np.ndarray, bias: float) -> tuple:
    """Grad-CAM by autograd: torch's own forward to the last feature map (a ResNet's layer4, a mobile
    net's head), its average over the cells, the signature's logit."""
    import torch

    net = pred.deep_model().network
    last = net.layer4 if hasattr(net, "layer4") else net.head
    store = {}
    hook = last.register_forward_hook(lambda _m, _i, out: store.update(act=out))
    x = torch.from_numpy(np.ascontiguousarray(crop[None, None], dtype=np.float32)).requires_grad_(True)
    with torch.enable_grad():
        net(x)
        act = store["act"]
        pooled = act.mean(dim=(2, 3)).double()  # the global average pooling of both backbones
        logit = pooled @ torch.from_numpy(weights) + bias
        (grad,) = torch.autograd.grad(logit[0], act)
    hook.remove()
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    raw = torch.relu((alpha * act).sum(dim=1))[0].detach().double().numpy()
    return raw, grad[0].detach().double().numpy(), float(logit[0].detach())


def test_signature_gradcam_equals_torch_autograd_on_the_shipped_weights(shipped: Predictor) -> None:
    affine = shipped.signature_affine()
    for seed in (0, 3):
        crop = _phantom_crop(shipped, seed)
        raw, grad, logit = _torch_gradcam(shipped, crop, affine.weights, affine.bias)
        pooled, act, _ = shipped.deep_model().features_and_activations(crop)
        cells = act.shape[0] * act.shape[1]
        assert raw.shape == act.shape[:2] == (crop.shape[0] // 32, crop.shape[1] // 32)
        assert logit == pytest.approx(float(affine.logit(pooled)), abs=1e-4)  # float32 network
        # The gradient is w_eff / cells in every cell (rel. 1e-6: torch's float32 backward).
        expected = np.broadcast_to((affine.weights / cells)[:, None, None], grad.shape)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-12)
        cam = weighted_cam(act, affine.weights / cells, *crop.shape)
        assert raw.max() > 0.0
        scaled = (raw - raw.min()) / (raw.max() - raw.min())
        # Cell (i, j) is centred on crop pixel (32 i, 32 j); 1e-5 covers float32 activations.
        np.testing.assert_allclose(cam[::32, ::32], scaled, atol=1e-5)


def test_default_heatmap_explains_the_dl_signature_and_says_so(shipped: Predictor) -> None:
    volume, mask = phantom.make_phantom(0)
    default = shipped.predict(volume, mask, {})
    head = shipped.predict(volume, mask, {}, heatmap_kind="cnn-head")
    assert default.provenance["heatmap"] == "dl-signature"
    assert head.provenance["heatmap"] == "cnn-head"
    # The scores do not depend on which map is drawn: the same code path gives the same digits.
    assert default.signature_scores == head.signature_scores
    lesion = shipped.lesion_slice(volume, mask)
    crop, box = lesion_crop(lesion, shipped.pipeline.crop_spec())
    _, cam_head, _ = shipped.deep_model().features_and_gradcam(crop)
    k = default.lesion.slice_index
    assert default.heatmap.shape == volume.shape and head.heatmap.shape == volume.shape
    # The CNN-head option is the network's own Grad-CAM (features_and_gradcam, the head's gradient)
    # placed on the image; 1e-6: the predictor's map is float32.
    placed = heatmap_to_slice(cam_head, box, lesion.image.shape)
    np.testing.assert_allclose(head.heatmap[k], placed, atol=1e-6)
    assert not np.allclose(default.heatmap, head.heatmap, atol=0.05)  # two different scores
    no_map = shipped.predict(volume, mask, {}, heatmap=False)
    assert no_map.heatmap is None and "heatmap" not in no_map.provenance


@pytest.mark.parametrize("kind", ["grad-cam", "", None, 1])
def test_unknown_heatmap_kind_is_refused(shipped: Predictor, kind: object) -> None:
    volume, mask = phantom.make_phantom(0)
    with pytest.raises(InputError, match="heatmap must be one of dl-signature, cnn-head"):
        shipped.predict(volume, mask, {}, heatmap_kind=kind)  # type: ignore[arg-type]
    assert HEATMAP_KINDS == ("dl-signature", "cnn-head")


def test_a_nonlinear_dl_signature_falls_back_to_the_cnn_head_with_a_warning(shipped: Predictor) -> None:
    """A random forest on the same components has no gradient: the CNN head is shown, and said."""
    from DLRPredictorLib.models.signatures import Signature

    pipe = shipped.pipeline
    f = _realistic_pooled(shipped, 80, seed=2)
    y = (shipped.signature_affine().logit(f) > np.median(shipped.signature_affine().logit(f))).astype(int)
    forest = Signature("DL", pipe.reducer.names, "rf", grid={"max_depth": [2]}, cv=2, seed=0)
    forest.fit(pipe.reducer.transform(f), y, feature_names=pipe.reducer.names)
    assert dl_signature_affine(pipe.reducer, forest) is None
    fresh = Predictor(shipped.bundle)  # its own pipeline object: the cached predictor stays as shipped
    fresh.pipeline.dl = forest
    volume, mask = phantom.make_phantom(0)
    res = fresh.predict(volume, mask, {})
    assert res.provenance["heatmap"] == "cnn-head"
    assert any("not linear in the deep features" in w for w in res.warnings)


def test_scene_volume_names_the_explained_score(tmp_path) -> None:
    from DLRPredictorLib import api
    from DLRPredictorLib.scene import adapter
    from DLRPredictorLib.scene.heatmap import HEATMAP_KIND_ATTRIBUTE
    from DLRPredictorLib.scene.segmentations import add_segmentation_from_mask
    from DLRPredictorLib.scene.volumes import add_volume_node

    volume, mask = phantom.make_phantom(0)
    scene = adapter.create_scene()
    try:
        vnode = add_volume_node(scene, volume, "img")
        seg, segment_id = add_segmentation_from_mask(scene, mask, vnode, "seg", "Lesion")
        first = api.predict_nodes(vnode, seg, segment_id)
        node = scene.GetNodeByID(first.heatmap_node_id)
        assert node.GetAttribute(HEATMAP_KIND_ATTRIBUTE) == "dl-signature"
        # A rerun with the other map updates the same node (one overlay per prefix) and its attribute.
        second = api.predict_nodes(vnode, seg, segment_id, heatmap_kind="cnn-head")
        assert second.heatmap_node_id == first.heatmap_node_id
        assert node.GetAttribute(HEATMAP_KIND_ATTRIBUTE) == "cnn-head"
        assert second.provenance["heatmap"] == "cnn-head"
        count = scene.GetNumberOfNodes()
        with pytest.raises(InputError, match="heatmap must be one of"):
            api.predict_nodes(vnode, seg, segment_id, heatmap_kind="head")
        assert scene.GetNumberOfNodes() == count  # refused before any node was added
    finally:
        scene.Clear(1)


def test_demo_cli_chooses_the_heatmap(tmp_path, capsys) -> None:
    from DLRPredictorLib import cli

    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--heatmap", "cnn-head"]) == 0
    assert "heatmap: Grad-CAM of the cnn-head" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--out", str(tmp_path / "other"), "--heatmap", "saliency"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'saliency'" in capsys.readouterr().err
