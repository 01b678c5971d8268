"""ResNet18 backbone, parsing heads and loading torchvision-style weights."""
import pytest
import torch

from skkp.resnet import MultiHeadParsingNet, ResNet18Backbone, TopDownHead, load_backbone_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _torchvision_resnet18_keys():
    """The state-dict keys of torchvision's resnet18 (without fc), written out by rule."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight"] + [f"bn1.{b}" for b in bn]
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            keys += [f"{p}.conv1.weight", f"{p}.conv2.weight"]
            keys += [f"{p}.bn1.{b}" for b in bn] + [f"{p}.bn2.{b}" for b in bn]
            if stage > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{b}" for b in bn]
    return keys


def _seeded(seed, fn):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def test_state_dict_names_match_torchvision():
    sd = ResNet18Backbone().state_dict()
    assert sorted(sd) == sorted(_torchvision_resnet18_keys())
    assert tuple(sd["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(sd["layer4.0.downsample.0.weight"].shape) == (512, 256, 1, 1)
    assert tuple(sd["layer4.1.conv2.weight"].shape) == (512, 512, 3, 3)
    n_params = sum(p.numel() for p in ResNet18Backbone().parameters())
    assert n_params == 11_176_512  # torchvision resnet18 (11,689,512) minus fc (513,000)


@pytest.mark.parametrize("width", [0.125, 0.25, 0.5])
def test_width_scales_channels_and_feature_strides(width):
    net = ResNet18Backbone(width=width).eval()
    feats = net(torch.zeros(2, 3, 64, 96))
    expected = [round(c * width) for c in (128, 256, 512)]
    assert [f.shape[1] for f in feats] == expected == list(net.out_channels)
    assert [tuple(f.shape[-2:]) for f in feats] == [(8, 12), (4, 6), (2, 3)]
    assert sorted(net.state_dict()) == sorted(_torchvision_resnet18_keys())


def test_heads_output_at_input_size_train_tuple_eval_sum():
    net = _seeded(0, lambda: MultiHeadParsingNet(n_classes=5, width=0.125))
    x = torch.randn(2, 3, 50, 70)
    outs = net.train()(x)
    assert isinstance(outs, tuple) and len(outs) == 3
    assert all(tuple(o.shape) == (2, 5, 50, 70) for o in outs)
    net.eval()
    total = net(x)
    assert tuple(total.shape) == (2, 5, 50, 70)
    heads = net.head_logits(x)  # in eval mode: BatchNorm uses its running statistics
    torch.testing.assert_close(total, heads[0] + heads[1] + heads[2])
    # every head has a BasicBlock, a 3x3 conv and a 1x1 classifier to n_classes
    for head in net.heads:
        assert head.classifier.kernel_size == (1, 1) and head.classifier.out_channels == 5
        assert head.conv[0].kernel_size == (3, 3)


def test_gradient_reaches_every_parameter():
    net = _seeded(1, lambda: MultiHeadParsingNet(n_classes=3, width=0.125)).train()
    outs = net(torch.randn(2, 3, 32, 32))
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_load_backbone_weights_roundtrip_and_ignores_fc(tmp_path):
    src = _seeded(1, ResNet18Backbone)
    state = dict(src.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # the ImageNet classifier is ignored
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)

    dst = _seeded(2, lambda: MultiHeadParsingNet(n_classes=4))
    assert not torch.equal(dst.backbone.conv1.weight, src.conv1.weight)
    head_before = dst.heads[0].classifier.weight.clone()
    assert load_backbone_weights(dst, path) is dst
    for k, v in src.state_dict().items():
        assert torch.equal(dst.backbone.state_dict()[k], v), k
    assert torch.equal(dst.heads[0].classifier.weight, head_before)  # heads untouched

    # a checkpoint wrapped in {"state_dict": ...} with DataParallel prefixes also loads
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pth")
    again = load_backbone_weights(ResNet18Backbone(), tmp_path / "wrapped.pth")
    assert torch.equal(again.layer3[1].bn2.running_var, src.layer3[1].bn2.running_var)


def test_load_backbone_weights_errors(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(ResNet18Backbone().state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatch.*width=1.0"):
        load_backbone_weights(ResNet18Backbone(width=0.5), path)
    state = ResNet18Backbone().state_dict()
    del state["layer2.0.downsample.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys.*layer2.0.downsample.0.weight.*unexpected.*extra"):
        load_backbone_weights(ResNet18Backbone(), tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_backbone_weights(ResNet18Backbone(), tmp_path / "nope.pth")
    with pytest.raises(TypeError, match="ResNet18Backbone"):
        load_backbone_weights(torch.nn.Linear(2, 2), path)


def test_head_stages_add_a_stride_4_head_and_sum_all_heads():
    backbone = ResNet18Backbone(width=0.125, stages=(1, 2, 3, 4)).eval()
    feats = backbone(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert list(backbone.out_channels) == [8, 16, 32, 64] == [f.shape[1] for f in feats]
    assert sorted(backbone.state_dict()) == sorted(_torchvision_resnet18_keys())  # still loads torchvision

    net = _seeded(3, lambda: MultiHeadParsingNet(n_classes=4, width=0.125, head_stages=(1, 2, 3, 4)))
    assert len(net.train()(torch.randn(2, 3, 32, 32))) == 4
    x = torch.randn(2, 3, 40, 48)
    net.eval()
    heads = net.head_logits(x)
    torch.testing.assert_close(net(x), heads[0] + heads[1] + heads[2] + heads[3])


def test_top_down_head_at_stride_2_joins_the_sum_and_fuses_every_level():
    net = _seeded(4, lambda: MultiHeadParsingNet(n_classes=4, width=0.125, head_stages=(1, 2, 3, 4),
                                                 top_down=True))
    assert isinstance(net.top_down, TopDownHead)
    x = torch.randn(2, 3, 40, 48)
    assert len(net.train()(x)) == 5
    logits, size = net.eval()._heads_at_stride(x)
    assert [tuple(o.shape[-2:]) for o in logits] == [(20, 24), (10, 12), (5, 6), (3, 3), (2, 2)]  # finest first
    heads = net.head_logits(x)
    assert len(heads) == 5
    torch.testing.assert_close(net(x), sum(heads[1:], heads[0]))
    # every level reaches the top-down head: the gradient of its logits reaches each lateral projection
    net.train()
    net.head_logits(x)[0].square().sum().backward()
    assert all(lat[0].weight.grad is not None and lat[0].weight.grad.abs().sum() > 0 for lat in net.top_down.laterals)
    assert len(net.top_down.laterals) == 5 and net.top_down.laterals[0][0].in_channels == 8  # the stem's channels
    without = MultiHeadParsingNet(n_classes=4, width=0.125, head_stages=(1, 2, 3, 4))
    assert without.top_down is None and len(without.train()(x)) == 4


@pytest.mark.parametrize("stages", [(), (0, 2), (2, 5), (2, 2)])
def test_bad_head_stages_raise(stages):
    with pytest.raises(ValueError, match="stages"):
        MultiHeadParsingNet(n_classes=3, width=0.125, head_stages=stages)


def test_upsample_bilinear_matches_interpolate_with_gradients():
    from torch.nn import functional as F

    from skkp.resnet import upsample_bilinear

    gen = torch.Generator().manual_seed(0)
    for (h, w), size in [((4, 4), (32, 32)), ((7, 5), (50, 70)), ((3, 9), (40, 48)), ((6, 6), (6, 6))]:
        x1 = torch.randn(2, 3, h, w, generator=gen, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        g = torch.randn(2, 3, *size, generator=gen)
        ours = upsample_bilinear(x1, size)
        ref = F.interpolate(x2, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        (ours * g).sum().backward()
        (ref * g).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, atol=1e-4, rtol=1e-4)


def test_upsample_sum_equals_the_sum_of_interpolations_with_gradients():
    from torch.nn import functional as F

    from skkp.resnet import upsample_sum

    gen = torch.Generator().manual_seed(0)
    size = (50, 70)
    # four strides and one term already at the output size; one channels-last term
    shapes = [(13, 18), (7, 9), (4, 5), (2, 3), size]
    xs = [torch.randn(2, 3, *s, generator=gen, requires_grad=True) for s in shapes]
    xs[1] = xs[1].detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    refs = [x.detach().clone().requires_grad_(True) for x in xs]
    g = torch.randn(2, 3, *size, generator=gen)
    ours = upsample_sum(xs, size)
    ref = sum(F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in refs)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    (ours * g).sum().backward()
    (ref * g).sum().backward()
    for x, r in zip(xs, refs):
        torch.testing.assert_close(x.grad, r.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_uint8_rgb_batches_are_normalised_by_the_network_as_on_the_host(channels_last):
    import numpy as np

    from skkp.augment import normalize_image

    net = _seeded(3, lambda: MultiHeadParsingNet(n_classes=4, width=0.125, channels_last=channels_last)).eval()
    rgb = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    host = torch.from_numpy(np.stack([normalize_image(im) for im in rgb]))
    with torch.no_grad():
        assert torch.equal(net(torch.from_numpy(rgb)), net(host))


def test_top_down_network_in_channels_last_gives_the_same_logits():
    """FaceParser keeps the network channels_last on CUDA: the top-down head must work in that layout."""
    plain = _seeded(5, lambda: MultiHeadParsingNet(n_classes=5, width=0.125, head_stages=(1, 2, 3, 4),
                                                   top_down=True)).eval()
    last = MultiHeadParsingNet(n_classes=5, width=0.125, head_stages=(1, 2, 3, 4), top_down=True,
                               channels_last=True).eval()
    last.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 40, 48)
    torch.testing.assert_close(last(x), plain(x), atol=1e-5, rtol=1e-4)
