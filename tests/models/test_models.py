"""Segmentation models: shapes, gradients, parameter groups, frozen BN, pretrained loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.nn.modules.batchnorm import _BatchNorm

from ripu.archs import ARCHS
from ripu.errors import RipuError
from ripu.models import build_model

NUM_CLASSES = 5
X_SHAPE = (1, 3, 33, 49)


def _x(seed: int = 0, shape: tuple[int, ...] = X_SHAPE) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _forward_backward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    target = torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]),
                           generator=torch.Generator().manual_seed(1))
    F.cross_entropy(out, target).backward()
    return out


def _assert_every_param_has_gradient(model: torch.nn.Module) -> None:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert no_grad == []


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    """One model per arch (ResNet-50 for the DeepLabs, FCN-8s at 1/8 width), built once."""
    return {
        "deeplabv2": build_model("deeplabv2", NUM_CLASSES, backbone="resnet50"),
        "deeplabv3plus": build_model("deeplabv3plus", NUM_CLASSES, backbone="resnet50"),
        "small": build_model("small", NUM_CLASSES),
        "vgg16_fcn8s": build_model("vgg16_fcn8s", NUM_CLASSES, width=0.125),
    }


@pytest.mark.parametrize(
    ("arch", "out_hw"),
    [("deeplabv2", (5, 7)), ("deeplabv3plus", (9, 13)), ("small", (9, 13))],
)
def test_output_shape_and_every_parameter_gets_a_gradient(models, arch, out_hw):
    model = models[arch]
    out = _forward_backward(model, _x())
    assert out.shape == (1, NUM_CLASSES, *out_hw)
    assert model.output_stride == {"deeplabv2": 8, "deeplabv3plus": 4, "small": 4}[arch]
    _assert_every_param_has_gradient(model)


def test_resnet101_deeplabv2_single_forward_backward():
    model = build_model("deeplabv2", NUM_CLASSES, backbone="resnet101")
    assert len(model.backbone.layer3) == 23  # ResNet-101, not 50
    out = _forward_backward(model, _x())
    assert out.shape == (1, NUM_CLASSES, 5, 7)
    _assert_every_param_has_gradient(model)


def test_deeplabv2_head_is_summed_dilated_convs_with_small_init(models):
    head = models["deeplabv2"].classifier
    assert [c.dilation for c in head.convs] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    feats = torch.randn(1, 2048, 4, 4)
    expected = sum(conv(feats) for conv in head.convs)
    torch.testing.assert_close(head(feats), expected)
    weights = torch.cat([c.weight.flatten() for c in head.convs])
    assert 0.008 < float(weights.detach().std()) < 0.012


def test_deeplabv3plus_dilated_backbone_and_aspp_rates(models):
    model = models["deeplabv3plus"]
    # strides of layer3/layer4 replaced by dilation 2/4 (torchvision's first block of a
    # stage keeps the previous dilation)
    assert model.backbone.layer3[0].conv2.stride == model.backbone.layer4[0].conv2.stride == (1, 1)
    assert model.backbone.layer3[1].conv2.dilation == (2, 2)
    assert model.backbone.layer4[1].conv2.dilation == (4, 4)
    # ASPP as the authors build it (BIT-DA/RIPU core/models/build.py:27-29, rates 1/6/12/18)
    rates = [b[0].dilation for b in model.aspp.branches]
    assert rates == [(1, 1), (6, 6), (12, 12), (18, 18)]
    assert model.low_project[0].out_channels == 48


def _convs(module: torch.nn.Module) -> list[tuple[int, int, int, int, int]]:
    """(in, out, kernel, dilation, groups) of every convolution, in module order."""
    return [(m.in_channels, m.out_channels, m.kernel_size[0], m.dilation[0], m.groups)
            for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def test_deeplabv3plus_head_widths_follow_the_authors(models):
    """Layer widths of core/models/classifier.py:59-106: 512-channel depthwise-separable ASPP
    on 2048 features, a 3x3 bottleneck from 5 x 512, 48-channel shortcut on layer1 (256),
    a decoder of two separable 3x3 convolutions 560 -> 512 -> 512 and a 1x1 classifier."""
    model = models["deeplabv3plus"]
    assert _convs(model.aspp.branches) == [
        (2048, 512, 1, 1, 1),
        (2048, 2048, 3, 6, 2048), (2048, 512, 1, 1, 1),
        (2048, 2048, 3, 12, 2048), (2048, 512, 1, 1, 1),
        (2048, 2048, 3, 18, 2048), (2048, 512, 1, 1, 1),
    ]
    assert _convs(model.aspp.pooling) == [(2048, 512, 1, 1, 1)]
    assert _convs(model.aspp.project) == [(2560, 512, 3, 1, 1)]
    assert _convs(model.low_project) == [(256, 48, 1, 1, 1)]
    assert _convs(model.decoder) == [(560, 560, 3, 1, 560), (560, 512, 1, 1, 1),
                                     (512, 512, 3, 1, 512), (512, 512, 1, 1, 1)]
    assert _convs(model.classifier) == [(512, NUM_CLASSES, 1, 1, 1)]
    assert model.classifier.bias is not None
    biased = [m for m in (model.aspp, model.low_project, model.decoder)
              for m in m.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    assert biased == []  # every convolution before the classifier is bias-free, BN follows
    norms = [m.num_features for m in model.decoder.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms == [560, 512, 512, 512]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_param_groups_disjoint_complete_with_10x_head_lr(models, arch):
    model = models[arch]
    backbone = {id(p) for p in model.backbone_parameters()}
    head = {id(p) for p in model.head_parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert backbone and head
    assert backbone.isdisjoint(head)
    assert backbone | head == trainable
    assert {id(p) for p in model.classifier.parameters()} <= head

    groups = model.param_groups(lr=0.01)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(0.01)
    assert by_name["head"]["lr"] == pytest.approx(0.1)
    assert by_name["head"]["lr_mult"] == 10.0 and by_name["backbone"]["lr_mult"] == 1.0
    assert all(g["initial_lr"] == g["lr"] for g in groups)
    optimizer = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=5e-4)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.1])
    assert model.param_groups(lr=0.01, head_lr_mult=1.0)[1]["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize("arch", ["small", "deeplabv3plus"])
def test_frozen_batchnorm_stays_frozen_under_train(models, arch):
    model = models[arch]
    bns = list(model.batchnorms())
    assert bns
    model.eval()
    model.train()
    assert all(not bn.training for bn in bns)
    assert model.training
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    in_groups = {id(p) for g in model.param_groups(0.01) for p in g["params"]}
    assert all(id(p) not in in_groups for bn in bns for p in bn.parameters())
    before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
    model(_x(3) * 5 + 2)
    for bn, (mean, var) in zip(bns, before, strict=True):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)


def test_unfrozen_batchnorm_trains():
    model = build_model("small", NUM_CLASSES, freeze_bn=False)
    model.train()
    bns = list(model.batchnorms())
    assert all(bn.training for bn in bns)
    assert all(p.requires_grad for bn in bns for p in bn.parameters())
    mean = bns[0].running_mean.clone()
    model(_x(3, (2, 3, 33, 49)) * 5 + 2)
    assert not torch.equal(bns[0].running_mean, mean)
    assert id(model.backbone.stem[1].weight) in {id(p) for p in model.backbone_parameters()}


def test_small_network_size_and_receptive_field():
    model = build_model("small", 19).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params < 1_000_000
    x = _x(0, (1, 3, 128, 256)).requires_grad_(True)
    out = model(x)
    assert out.shape == (1, 19, 32, 64)  # output stride 4
    assert model.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert out.is_contiguous()
    out[0, :, 16, 32].sum().backward()  # output pixel at the image centre
    cols = (x.grad.abs().sum((0, 1, 2)) > 0).nonzero().flatten()
    rows = (x.grad.abs().sum((0, 1, 3)) > 0).nonzero().flatten()
    assert int(cols.max() - cols.min()) >= 200  # sees most of the 256-pixel width
    assert int(rows.max() - rows.min()) >= 120


def test_build_is_deterministic_per_seed_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_model("small", NUM_CLASSES, seed=3).state_dict()
    b = build_model("small", NUM_CLASSES, seed=3).state_dict()
    c = build_model("small", NUM_CLASSES, seed=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_unknown_arch_and_backbone_list_valid_names():
    with pytest.raises(RipuError, match="deeplabv2.*deeplabv3plus.*small"):
        build_model("unet", NUM_CLASSES)
    with pytest.raises(RipuError, match="resnet101.*resnet50"):
        build_model("deeplabv2", NUM_CLASSES, backbone="vgg16")


# -- pretrained weights -------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    """A torchvision ResNet-50 state dict on disk, like the published ImageNet weights
    (no ``num_batches_tracked``), with non-default BN statistics."""
    torch.manual_seed(11)
    net = torchvision.models.resnet50(weights=None)
    for m in net.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    state = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path_factory.mktemp("weights") / "resnet50-imagenet.pth"
    torch.save(state, path)
    return str(path), state


def test_imagenet_weights_load_into_backbone(resnet50_file):
    path, state = resnet50_file
    model = build_model("deeplabv2", NUM_CLASSES, backbone="resnet50", pretrained=path)
    loaded = model.backbone.state_dict()
    for key in ("conv1.weight", "layer1.0.bn1.running_mean", "layer4.2.conv3.weight",
                "layer3.5.bn3.running_var", "bn1.bias"):
        assert torch.equal(loaded[key], state[key])
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))


def test_weights_for_another_resnet_error_names_file(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(RipuError, match=r"resnet18\.pth.*torchvision resnet50") as err:
        build_model("deeplabv3plus", NUM_CLASSES, backbone="resnet50", pretrained=path)
    assert "missing keys" in str(err.value) and "shape mismatches" in str(err.value)


def test_missing_or_unreadable_weights_file(tmp_path):
    with pytest.raises(RipuError, match="nope.pth.*does not exist"):
        build_model("small", NUM_CLASSES, pretrained=tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(RipuError, match="cannot read weights file .*garbage.pth"):
        build_model("small", NUM_CLASSES, pretrained=garbage)


def test_imagenet_weights_rejected_by_small_network(resnet50_file):
    with pytest.raises(RipuError, match="no ImageNet ResNet backbone"):
        build_model("small", NUM_CLASSES, pretrained=resnet50_file[0])


def test_full_checkpoint_round_trip_and_class_count_check(tmp_path):
    source = build_model("small", NUM_CLASSES, seed=1, freeze_bn=False)
    source.train()
    source(_x(0, (2, 3, 33, 49)))  # move the BN statistics away from their init
    path = tmp_path / "ckpt.pt"
    torch.save({"model": source.state_dict(), "iteration": 7}, path)

    loaded = build_model("small", NUM_CLASSES, seed=2, pretrained=path).state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in source.state_dict().items())

    bare = tmp_path / "state.pt"  # a bare model.state_dict() is accepted too
    torch.save(source.state_dict(), bare)
    loaded = build_model("small", NUM_CLASSES, seed=2, pretrained=bare).state_dict()
    assert torch.equal(loaded["classifier.weight"],
                       source.state_dict()["classifier.weight"])

    with pytest.raises(RipuError, match=r"ckpt\.pt.*5 classes.*has 7"):
        build_model("small", 7, pretrained=path)


def test_checkpoint_of_another_arch_errors(tmp_path, models):
    path = tmp_path / "small.pt"
    torch.save({"model": models["small"].state_dict()}, path)
    with pytest.raises(RipuError, match=r"small\.pt does not fit.*deeplabv3plus checkpoint"):
        build_model("deeplabv3plus", NUM_CLASSES, backbone="resnet50", pretrained=path)


def test_batchnorm_with_batch_statistics_and_frozen_affine():
    """LSE's DeepLab: BN affine parameters frozen, the layers in train mode (batch
    statistics, running statistics updated); plain freezing keeps them in eval mode."""
    model = build_model("small", NUM_CLASSES, freeze_bn=True, bn_batch_stats=True)
    bns = list(model.batchnorms())
    assert bns and all(not p.requires_grad for bn in bns for p in bn.parameters())
    model.train()
    assert all(bn.training for bn in bns)
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert not torch.equal(bns[0].running_mean, before)
    model.eval()
    assert not any(bn.training for bn in bns)
    frozen = build_model("small", NUM_CLASSES, freeze_bn=True).train()
    assert not any(bn.training for bn in frozen.batchnorms())
