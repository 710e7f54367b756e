"""FCN-8s on VGG16: the same logits as the LSE authors' module given the same weights, their
key layout and torchvision's VGG16 weights load, their optimiser groups and their loss.

``AuthorsFCN8s`` below is MNaseerSubhani/LSE model/fcn8s.py:8-161 (FCN8s), copied and
adapted only to run here: ``forward`` drops the ``ssl``/``lbl`` loss branch (:158-159) and
``np.ogrid`` indexing is kept; ``authors_param_groups`` is their ``get_parameters``
(:163-185) and the Adam call of model/__init__.py:21-28; ``authors_target_loss`` is their
``CrossEntropy2d`` (:192-207) with the focal term of LSE.py:401-410.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ripu.config import LossConfig, OptimConfig
from ripu.engine.objective import Objective
from ripu.engine.optim import build_optimizer
from ripu.errors import RipuError
from ripu.kinds import get_kind
from ripu.models import build_model


class AuthorsFCN8s(nn.Module):
    def __init__(self, num_classes=21):
        super(AuthorsFCN8s, self).__init__()  # noqa: UP008 - their code as it is
        self.conv1_1 = nn.Conv2d(3, 64, 3, padding=100)
        self.relu1_1 = nn.ReLU(inplace=True)
        self.conv1_2 = nn.Conv2d(64, 64, 3, padding=1)
        self.relu1_2 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/2
        self.conv2_1 = nn.Conv2d(64, 128, 3, padding=1)
        self.relu2_1 = nn.ReLU(inplace=True)
        self.conv2_2 = nn.Conv2d(128, 128, 3, padding=1)
        self.relu2_2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/4
        self.conv3_1 = nn.Conv2d(128, 256, 3, padding=1)
        self.relu3_1 = nn.ReLU(inplace=True)
        self.conv3_2 = nn.Conv2d(256, 256, 3, padding=1)
        self.relu3_2 = nn.ReLU(inplace=True)
        self.conv3_3 = nn.Conv2d(256, 256, 3, padding=1)
        self.relu3_3 = nn.ReLU(inplace=True)
        self.pool3 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/8
        self.conv4_1 = nn.Conv2d(256, 512, 3, padding=1)
        self.relu4_1 = nn.ReLU(inplace=True)
        self.conv4_2 = nn.Conv2d(512, 512, 3, padding=1)
        self.relu4_2 = nn.ReLU(inplace=True)
        self.conv4_3 = nn.Conv2d(512, 512, 3, padding=1)
        self.relu4_3 = nn.ReLU(inplace=True)
        self.pool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/16
        self.conv5_1 = nn.Conv2d(512, 512, 3, padding=1)
        self.relu5_1 = nn.ReLU(inplace=True)
        self.conv5_2 = nn.Conv2d(512, 512, 3, padding=1)
        self.relu5_2 = nn.ReLU(inplace=True)
        self.conv5_3 = nn.Conv2d(512, 512, 3, padding=1)
        self.relu5_3 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/32
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d()
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d()
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(
            num_classes, num_classes, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(
            num_classes, num_classes, 16, stride=8, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(
            num_classes, num_classes, 4, stride=2, bias=False)
        self._initialize_weights()

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.zero_()
                if m.bias is not None:
                    m.bias.data.zero_()
            if isinstance(m, nn.ConvTranspose2d):
                assert m.kernel_size[0] == m.kernel_size[1]
                initial_weight = self.get_upsampling_weight(
                    m.in_channels, m.out_channels, m.kernel_size[0])
                m.weight.data.copy_(initial_weight)

    def get_upsampling_weight(self, in_channels, out_channels, kernel_size):
        """Make a 2D bilinear kernel suitable for upsampling"""
        factor = (kernel_size + 1) // 2
        if kernel_size % 2 == 1:
            center = factor - 1
        else:
            center = factor - 0.5
        og = np.ogrid[:kernel_size, :kernel_size]
        filt = (1 - abs(og[0] - center) / factor) * \
               (1 - abs(og[1] - center) / factor)
        weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size),
                          dtype=np.float64)
        weight[range(in_channels), range(out_channels), :, :] = filt
        return torch.from_numpy(weight).float()

    def forward(self, x):
        h = x
        h = self.relu1_1(self.conv1_1(h))
        h = self.relu1_2(self.conv1_2(h))
        h = self.pool1(h)
        h = self.relu2_1(self.conv2_1(h))
        h = self.relu2_2(self.conv2_2(h))
        h = self.pool2(h)
        h = self.relu3_1(self.conv3_1(h))
        h = self.relu3_2(self.conv3_2(h))
        h = self.relu3_3(self.conv3_3(h))
        h = self.pool3(h)
        pool3 = h  # 1/8
        h = self.relu4_1(self.conv4_1(h))
        h = self.relu4_2(self.conv4_2(h))
        h = self.relu4_3(self.conv4_3(h))
        h = self.pool4(h)
        pool4 = h  # 1/16
        h = self.relu5_1(self.conv5_1(h))
        h = self.relu5_2(self.conv5_2(h))
        h = self.relu5_3(self.conv5_3(h))
        h = self.pool5(h)
        h = self.relu6(self.fc6(h))
        h = self.drop6(h)
        h = self.relu7(self.fc7(h))
        fc7_response = self.drop7(h)
        h = self.score_fr(fc7_response)
        h = self.upscore2(h)
        upscore2 = h  # 1/16
        h = self.score_pool4(pool4*0.01)
        h = h[:, :, 5:5 + upscore2.size()[2], 5:5 + upscore2.size()[3]]
        score_pool4c = h  # 1/16
        h = upscore2 + score_pool4c  # 1/16
        h = self.upscore_pool4(h)
        upscore_pool4 = h  # 1/8
        h = self.score_pool3(pool3*0.0001)
        h = h[:, :,
              9:9 + upscore_pool4.size()[2],
              9:9 + upscore_pool4.size()[3]]
        score_pool3c = h  # 1/8
        h = upscore_pool4 + score_pool3c  # 1/8
        h = self.upscore8(h)
        h = h[:, :, 31:31 + x.size()[2], 31:31 + x.size()[3]].contiguous()
        return h

    def get_parameters(self, bias=False):
        modules_skipped = (nn.ReLU, nn.MaxPool2d, nn.Dropout2d, nn.Sequential, AuthorsFCN8s)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if bias:
                    yield m.bias
                else:
                    yield m.weight
            elif isinstance(m, nn.ConvTranspose2d):
                if bias:
                    assert m.bias is None
            elif isinstance(m, modules_skipped):
                continue
            else:
                raise ValueError('Unexpected module: %s' % str(m))  # noqa: UP031


def authors_target_loss(predict, target, gamma=3, beta=0.1):
    """CrossEntropy2d (model/fcn8s.py:192-207, per pixel) and LSE.py:401-410."""
    n, c, h, w = predict.size()
    target_mask = (target >= 0) * (target != 255)
    target = target[target_mask]
    predict = predict.transpose(1, 2).transpose(2, 3).contiguous()
    predict = predict[target_mask.view(n, h, w, 1).repeat(1, 1, 1, c)].view(-1, c)
    loss_seg_trg = F.cross_entropy(predict, target, reduction="none")
    loss_trg_2 = torch.mean(loss_seg_trg)
    pt = torch.exp(-loss_seg_trg)
    trg_fcl = torch.mean(loss_seg_trg * (1 - pt) ** gamma)
    return beta * trg_fcl + loss_trg_2


CLASSES = 19


def _authors_random(seed: int = 0) -> AuthorsFCN8s:
    """Their module with every convolution drawn at random (He-scaled), upsampling bilinear."""
    torch.manual_seed(seed)
    net = AuthorsFCN8s(num_classes=CLASSES)
    for m in net.modules():
        if type(m) is nn.Conv2d:
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, std=(2.0 / fan_in) ** 0.5)
            nn.init.normal_(m.bias, std=0.1)
    return net.eval()


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory):
    """Their module with random weights, and its state dict saved in their key layout, as
    their released ``*_vggfcn_init.pth`` is (loaded by model/fcn8s.py:211-212)."""
    net = _authors_random()
    path = tmp_path_factory.mktemp("lse") / "gta5_vggfcn_init.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_same_logits_as_the_authors_module_from_their_checkpoint(authors_file):
    net, path = authors_file
    ours = build_model("vgg16_fcn8s", CLASSES, pretrained=path).eval()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ours.modules())
    x = torch.randn(1, 3, 45, 70, generator=torch.Generator().manual_seed(3)) * 50
    with torch.no_grad():
        want, got = net(x), ours(x)
    assert got.shape == want.shape == (1, CLASSES, 45, 70)
    assert float(want.std()) > 0  # the skips and the score layers contribute
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bilinear_upsampling_kernels_and_zero_scores_as_the_authors():
    ours = build_model("vgg16_fcn8s", 3, width=0.125)
    ref = AuthorsFCN8s(num_classes=3)
    for name in ("upscore2", "upscore_pool4", "upscore8"):
        w = getattr(ours, name).weight
        assert torch.equal(w, getattr(ref, name).weight) and not w.requires_grad
    assert float(ours.upscore2.weight[0, 0, 1, 1]) == pytest.approx(0.5625)  # (3/4)^2
    assert float(ours.upscore2.weight[0, 1].abs().sum()) == 0.0  # channel to itself only
    for score in (ours.classifier, ours.score_pool3, ours.score_pool4):
        assert float(score.weight.detach().abs().sum() + score.bias.detach().abs().sum()) == 0


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """torchvision's VGG16 (random weights) saved as its published ImageNet state dict is."""
    torch.manual_seed(5)
    vgg = torchvision.models.vgg16(weights=None)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(vgg.state_dict(), path)
    return vgg, path


def test_torchvision_vgg16_weights_load_with_fc_as_convolutions(vgg16_file):
    vgg, path = vgg16_file
    ours = build_model("vgg16_fcn8s", CLASSES, pretrained=path)
    b = ours.backbone
    assert torch.equal(b.conv1_1.weight, vgg.features[0].weight)
    assert torch.equal(b.conv5_3.bias, vgg.features[28].bias)
    # fc6 as a 7x7 convolution on a 7x7 pool5 map is VGG's first linear layer on it.
    pool5 = torch.randn(1, 512, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(b.fc6(pool5).flatten(), vgg.classifier[0](pool5.flatten(1))[0])
        fc = torch.randn(1, 4096, 1, 1)
        torch.testing.assert_close(b.fc7(fc).flatten(), vgg.classifier[3](fc.flatten(1))[0])
    assert float(ours.classifier.weight.detach().abs().sum()) == 0.0  # scores start at zero


def test_foreign_files_that_do_not_fit_name_the_problem(tmp_path, authors_file, vgg16_file):
    state = vgg16_file[0].state_dict()
    state["features.30.weight"] = state.pop("features.28.weight")  # another VGG's layout
    other = tmp_path / "vgg_other.pth"
    torch.save(state, other)
    with pytest.raises(RipuError, match=r"vgg_other\.pth does not fit: missing keys "
                                        r"\[conv5_3\.weight\].*unexpected keys "
                                        r"\[features\.30\.weight\].*torchvision vgg16"):
        build_model("vgg16_fcn8s", CLASSES, pretrained=other)
    with pytest.raises(RipuError, match=r"gta5_vggfcn_init\.pth was trained for 19 classes; "
                                        r"the model has 16"):
        build_model("vgg16_fcn8s", 16, pretrained=authors_file[1])
    with pytest.raises(RipuError, match=r"does not fit.*LSE authors' layout"):
        build_model("vgg16_fcn8s", CLASSES, width=0.5, pretrained=authors_file[1])


def test_adam_groups_are_the_authors(authors_file):
    """Weights at lr, biases at 2 lr, betas (0.9, 0.99), transposed convolutions left out:
    the same parameters in each group as their get_parameters."""
    net, path = authors_file
    ours = build_model("vgg16_fcn8s", CLASSES, pretrained=path)
    opt = build_optimizer(ours, OptimConfig(name="adam", lr=1e-6, head_lr_mult=1.0,
                                            bias_lr_mult=2.0, betas=(0.9, 0.99),
                                            weight_decay=0.0, poly_power=0.0))
    assert isinstance(opt, torch.optim.Adam)
    name_of = {id(p): n for n, p in ours.named_parameters()}
    theirs = {n: p for n, p in net.named_parameters()}
    ident = {id(p): n for n, p in theirs.items()}
    by_lr: dict[float, set[str]] = {}
    for g in opt.param_groups:
        assert g["betas"] == (0.9, 0.99) and g["weight_decay"] == 0.0
        by_lr.setdefault(g["lr"], set()).update(name_of[id(p)] for p in g["params"])

    def ours_name(n: str) -> str:
        layer, _, part = n.partition(".")
        head = {"score_fr": "classifier", "score_pool3": "score_pool3",
                "score_pool4": "score_pool4"}
        return f"{head[layer]}.{part}" if layer in head else f"backbone.{n}"
    want = {1e-6: {ours_name(ident[id(p)]) for p in net.get_parameters(bias=False)},
            2e-6: {ours_name(ident[id(p)]) for p in net.get_parameters(bias=True)}}
    got = {round(lr * 1e7): names for lr, names in by_lr.items()}
    assert got == {round(lr * 1e7): names for lr, names in want.items()}


def test_lse_loss_is_the_authors_per_pixel_ce_plus_focal():
    """The lse kind's target terms, weighted as the VGG rows weight them, equal their
    per-pixel CrossEntropy2d mean plus 0.1 x the mean focal term (gamma 3)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, CLASSES, 6, 9, generator=g) * 3
    label = torch.randint(0, CLASSES, (1, 6, 9), generator=g)
    label[0, :2, :3] = 255
    objective = Objective(get_kind("lse").terms, LossConfig(focal=0.1, focal_gamma=3.0))
    batch = {"source": None, "target": {"image": logits, "label": label}}
    terms = objective.terms(batch, lambda x, size: x, torch.device("cpu"))
    torch.testing.assert_close(objective.total(terms), authors_target_loss(logits, label))
