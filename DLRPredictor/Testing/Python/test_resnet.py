"""The project's ResNet against torchvision's own: same parameters, same outputs, no torchvision import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from DLRPredictorLib.deep import deep_model as dfe  # noqa: E402
from DLRPredictorLib.deep import resnet  # noqa: E402

LIB_PARENT = Path(dfe.__file__).resolve().parents[2]


def _torchvision_net(arch: str, in_channels: int, num_classes: int = 2) -> torch.nn.Module:
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = torch.nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


@pytest.mark.parametrize("arch", resnet.LAYOUTS)
def test_state_dict_layout_matches_torchvision(arch: str) -> None:
    ours = dfe.build_resnet(arch, num_classes=2, in_channels=1).state_dict()
    theirs = _torchvision_net(arch, 1).state_dict()
    assert list(ours) == list(theirs)  # same names in the same order
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert {k: v.dtype for k, v in ours.items()} == {k: v.dtype for k, v in theirs.items()}


@pytest.mark.parametrize(("arch", "in_channels"), [("resnet18", 1), ("resnet34", 3), ("resnet50", 1)])
def test_torchvision_weights_give_identical_outputs(arch: str, in_channels: int) -> None:
    torch.manual_seed(3)
    theirs = _torchvision_net(arch, in_channels)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours = dfe.build_resnet(arch, num_classes=2, in_channels=in_channels)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.eval()
    ours.eval()
    x = torch.randn(2, in_channels, 80, 72)
    with torch.no_grad():
        a, b = theirs(x), ours(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert float(a.abs().max()) > 1e-3  # a meaningful comparison, not two zero vectors


@pytest.mark.parametrize(("arch", "in_channels"), [("resnet18", 1), ("resnet50", 1), ("resnet18", 3)])
def test_same_seed_gives_bit_identical_initial_weights(arch: str, in_channels: int) -> None:
    torch.manual_seed(7)
    theirs = _torchvision_net(arch, in_channels)
    if in_channels != 3:  # how DLRPredictor initialised the replaced conv1 when it used torchvision
        torch.nn.init.kaiming_normal_(theirs.conv1.weight, mode="fan_out", nonlinearity="relu")
    torch.manual_seed(7)
    ours = dfe.build_resnet(arch, num_classes=2, in_channels=in_channels)
    a, b = theirs.state_dict(), ours.state_dict()
    # Bit-identical: both builds draw from the same seeded generator through the same torch.nn.init
    # calls in the same order (a different draw would give unrelated numbers, not other last bits).
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_initialisation_follows_torchvision_scheme() -> None:
    torch.manual_seed(0)
    net = resnet.build("resnet18", 2, 1)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * kh * kw)).
    w = convs[-1].weight
    expected = (2.0 / (w.shape[0] * w.shape[2] * w.shape[3])) ** 0.5
    assert abs(float(w.std()) - expected) / expected < 0.05
    assert all(float(m.weight.min()) == 1.0 and float(m.bias.abs().max()) == 0.0 for m in bns)  # constants


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_a_network_built_for_loading_draws_no_random_numbers_and_loads_exactly(arch: str) -> None:
    torch.manual_seed(3)
    trained = dfe.build_resnet(arch, num_classes=2, in_channels=1)
    for m in trained.modules():  # BatchNorm statistics as a trained network would have them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    trained.eval()
    rng_before = torch.get_rng_state()
    model = dfe.DeepModel.from_state_dict(trained.state_dict(), arch, in_channels=1)
    # No draw from the global generator: a training seeded after a load is unaffected (a byte state).
    assert torch.equal(torch.get_rng_state(), rng_before)
    loaded = model.network
    a, b = trained.state_dict(), loaded.state_dict()
    # Bit-identical: the tensors are copied, and the same torch modules then run on the same input with
    # the same thread count.
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(trained(x), loaded(x))
    # A default build still draws (it is the training initialisation).
    dfe.build_resnet(arch, num_classes=2, in_channels=1)
    assert not torch.equal(torch.get_rng_state(), rng_before)


def test_unknown_architecture_is_a_config_error() -> None:
    from DLRPredictorLib.base.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown CNN architecture"):
        dfe.build_resnet("resnet7")


def test_building_and_running_a_network_does_not_import_torchvision() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(LIB_PARENT)!r})
        import torch
        from DLRPredictorLib.deep import deep_model as dfe
        model = dfe.DeepModel(dfe.build_resnet("resnet18"), "resnet18")
        model.features(torch.zeros(1, 64, 64).numpy())
        model.features_and_gradcam(torch.zeros(64, 64).numpy())
        print("torchvision" in sys.modules, "torch._dynamo" in sys.modules)
        """
    )
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
