"""The numpy ResNet (resnet_numpy) against real torch networks, and the shared thread limits."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from DLRPredictorLib.base.errors import BundleError
from DLRPredictorLib.base.thread_limits import BLAS_ONE_THREAD, ITK_ONE_THREAD, SharedLimit
from DLRPredictorLib.deep.deep_model import DeepModel, build_resnet
from DLRPredictorLib.deep.resnet_numpy import ResNetInference, check_tensors, expected_shapes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _with_trained_batchnorm(net, seed: int = 1):
    """Give every BatchNorm the non-trivial statistics and affine terms of a trained network."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
                m.weight.copy_(torch.randn(c, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return net.eval()


def _torch_layer4(net, x):
    """torch's own modules, in eval mode (BatchNorm not folded)."""
    return net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))


def _state(net) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    ("arch", "in_channels", "shape"),
    [
        ("resnet18", 1, (2, 96, 96)),
        ("resnet18", 1, (1, 70, 97)),  # odd, non-square: padding and stride arithmetic
        ("resnet34", 3, (1, 64, 64)),
        ("resnet50", 1, (2, 96, 96)),
    ],
)
def test_numpy_forward_matches_the_torch_network(arch: str, in_channels: int, shape: tuple) -> None:
    import torch

    torch.manual_seed(0)
    net = _with_trained_batchnorm(build_resnet(arch, in_channels=in_channels))
    x = np.random.default_rng(4).normal(size=(shape[0], in_channels, *shape[1:])).astype(np.float32)
    with torch.no_grad():
        act_ref = _torch_layer4(net, torch.from_numpy(x))
        logits_ref = net(torch.from_numpy(x)).numpy()
    act_ref = act_ref.numpy().transpose(0, 2, 3, 1)  # channels-last, as the engine returns it
    engine = ResNetInference(_state(net), arch, in_channels=in_channels)
    act = engine.trunk(x)
    assert act.shape == act_ref.shape and act.dtype == np.float32
    scale = float(np.abs(act_ref).max())
    assert scale > 0.1
    assert float(np.abs(act - act_ref).max()) < 1e-5 * scale  # float32 rounding only
    pooled, logits = engine.head(act)
    np.testing.assert_allclose(pooled, act_ref.mean(axis=(1, 2)), atol=1e-5 * scale)
    np.testing.assert_allclose(logits, logits_ref, atol=1e-4 * max(1.0, float(np.abs(logits_ref).max())))


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_expected_shapes_are_the_torch_state_dict(arch: str) -> None:
    for in_channels, classes in ((1, 2), (3, 5)):
        net = build_resnet(arch, num_classes=classes, in_channels=in_channels, initialise=False)
        torch_shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert expected_shapes(arch, in_channels, classes) == torch_shapes


def test_weights_are_checked_before_use() -> None:
    state = _state(build_resnet("resnet18", initialise=False))
    state = {k: np.zeros_like(v) if v.dtype != np.int64 else v for k, v in state.items()}
    bad = dict(state, **{"layer2.0.conv1.weight": np.zeros((128, 64, 3, 3), np.int32)})
    with pytest.raises(BundleError, match=r"layer2\.0\.conv1\.weight .*not floating point"):
        check_tensors(bad, "resnet18", 1, 2, "w.safetensors")
    nan = dict(state, **{"fc.bias": np.array([0.0, np.nan], np.float32)})
    with pytest.raises(BundleError, match=r"fc\.bias .*NaN"):
        ResNetInference(nan, "resnet18", source="w.safetensors")
    extra = dict(state, **{"layer5.0.conv1.weight": np.zeros((1,), np.float32)})
    with pytest.raises(BundleError, match=r"1 unexpected \(e\.g\. layer5"):
        check_tensors(extra, "resnet18", 1, 2, "w.safetensors")
    wrong = r"wrong shape \(e\.g\. conv1\.weight \(64, 1, 7, 7\) != \(64, 3, 7, 7\)"
    with pytest.raises(BundleError, match=wrong):
        check_tensors(state, "resnet18", 3, 2, "w.safetensors")


def test_gradcam_weights_equal_torch_autograd() -> None:
    import torch

    torch.manual_seed(3)
    net = _with_trained_batchnorm(build_resnet("resnet18"), seed=3)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 1, 96, 128)).astype(np.float32))
    with torch.no_grad():
        act = _torch_layer4(net, x)
    act = act.requires_grad_(True)
    with torch.enable_grad():
        logits = net.fc(torch.flatten(net.avgpool(act), 1))
        (grad,) = torch.autograd.grad(logits[0, 1], act)
    reference = grad.mean(dim=(2, 3))[0].numpy()
    engine = ResNetInference(_state(net), "resnet18")
    weights = engine.gradcam_weights(1, act.shape[2] * act.shape[3])
    np.testing.assert_allclose(weights, reference, rtol=1e-6, atol=1e-9)


def test_single_crop_digits_repeat_and_agree_with_batches() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.manual_seed(5)
    model = DeepModel(_with_trained_batchnorm(build_resnet("resnet18"), seed=5), "resnet18")
    crops = np.random.default_rng(2).normal(size=(3, 96, 96)).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):  # as every prediction runs
        first = [model.features_and_gradcam(c) for c in crops]
        again = [model.features_and_gradcam(c) for c in crops[::-1]][::-1]
    # Bit-identical by design: one crop always runs on one BLAS thread through the same code
    # (deep_features._threads_for), whatever else ran before it.
    for (f1, c1, p1), (f2, c2, p2) in zip(first, again, strict=True):
        assert np.array_equal(f1, f2) and np.array_equal(c1, c2) and p1 == p2
    batched = model.features(crops)
    scale = float(np.abs(batched).max())
    assert scale > 0.1
    # Other kernels for a batch or two threads: the last digits only.
    np.testing.assert_allclose(np.stack([f for f, _, _ in first]), batched, rtol=0, atol=1e-5 * scale)


def test_a_single_crop_runs_on_one_blas_thread_a_batch_on_the_process_setting(monkeypatch) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    model = DeepModel(build_resnet("resnet18").state_dict(), "resnet18")
    seen: list[set[int]] = []
    trunk = model.engine.trunk

    def spy(x):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return trunk(x)

    monkeypatch.setattr(model.engine, "trunk", spy)
    crops = np.random.default_rng(0).normal(size=(2, 64, 64)).astype(np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        model.features_and_gradcam(crops[0])
        model.features(crops[:1])
        model.features(crops)
    assert seen == [{1}, {1}, {2}]


def test_large_batches_are_cut_into_chunks_with_the_same_result(monkeypatch) -> None:
    from DLRPredictorLib.deep import resnet_numpy

    model = DeepModel(build_resnet("resnet18").state_dict(), "resnet18")
    crops = np.random.default_rng(3).normal(size=(5, 64, 64)).astype(np.float32)
    whole = model.features_and_probabilities(crops)
    calls: list[int] = []
    trunk = model.engine.trunk

    def spy(x):
        calls.append(x.shape[0])
        return trunk(x)

    monkeypatch.setattr(model.engine, "trunk", spy)
    monkeypatch.setattr(resnet_numpy, "CHUNK_PIXELS", 2 * 64 * 64)  # two crops per chunk
    chunked = model.features_and_probabilities(crops)
    assert calls == [2, 2, 1]
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-5, atol=1e-7)


def test_network_property_rebuilds_the_same_torch_network(tmp_path) -> None:
    import torch
    from DLRPredictorLib.deep.weights import save_safetensors

    torch.manual_seed(6)
    net = _with_trained_batchnorm(build_resnet("resnet18"), seed=6)
    loaded = DeepModel.from_safetensors(save_safetensors(net, tmp_path / "w.safetensors"), "resnet18")
    rebuilt = loaded.network
    assert rebuilt is not net and not rebuilt.training
    assert not any(p.requires_grad for p in rebuilt.parameters())
    for key, value in net.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key  # float32 stored as it is: exact


# --------------------------------------------------------------------------- thread limits


def test_shared_limit_applies_once_and_restores_after_the_last_user() -> None:
    log: list[str] = []

    def apply():
        log.append("apply")
        return lambda: log.append("restore")

    limit = SharedLimit(apply)
    with limit.held():
        with limit.held():
            assert limit.users == 2
        assert log == ["apply"]
    assert log == ["apply", "restore"] and limit.users == 0
    with pytest.raises(RuntimeError):
        with limit.held():
            raise RuntimeError("boom")
    assert log == ["apply", "restore", "apply", "restore"] and limit.users == 0


def test_shared_limit_survives_overlapping_threads() -> None:
    log: list[str] = []
    limit = SharedLimit(lambda: (log.append("apply"), lambda: log.append("restore"))[1])
    inside, release = threading.Event(), threading.Event()

    def other():
        with limit.held():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with limit.held():
        t.start()
        assert inside.wait(5)
    assert log == ["apply"]  # the other thread still holds it
    release.set()
    t.join(5)
    assert log == ["apply", "restore"]


def test_real_limits_restore_the_process_settings() -> None:
    import SimpleITK as sitk
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    itk_before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            with ITK_ONE_THREAD.held(), BLAS_ONE_THREAD.held():
                assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
                assert blas_threads() == {1}
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 2
            assert blas_threads() == {2}
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_before)
