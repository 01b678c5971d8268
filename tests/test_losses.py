"""OHEM cross-entropy, the multi-head (deep supervision) loss, and the keypoint losses (Wing, heatmap JS)."""
import math

import pytest
import torch
from torch.nn import functional as F

from skkp.losses import MaskedKeypointLoss, MultiHeadLoss, OhemCrossEntropy, gaussian_js_divergence
from skkp.nets import HeatmapKeypointNet, soft_argmax
from skkp.schemas import IGNORE_INDEX

THR = -math.log(0.7)


def _confident(target, n_classes, margin=8.0):
    """Logits that put a probability close to 1 on ``target``."""
    return F.one_hot(target, n_classes).permute(0, 3, 1, 2).float() * margin


def test_all_hard_equals_plain_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.zeros(2, 3, 5, 6)  # p = 1/3 < 0.7 everywhere: every pixel is hard
    target = torch.randint(0, 3, (2, 5, 6), generator=gen)
    out = OhemCrossEntropy(min_kept=4)(logits, target)
    torch.testing.assert_close(out, F.cross_entropy(logits, target))


def test_keeps_only_hard_pixels_when_more_than_min_kept():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = _confident(target, 3)
    wrong = [(0, 0), (1, 2), (3, 3)]  # three clearly wrong pixels, the rest easy
    for r, c in wrong:
        logits[0, :, r, c] = torch.tensor([0.0, 3.0, 1.0])
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    is_wrong = torch.zeros(1, 4, 4, dtype=torch.bool)
    for r, c in wrong:
        is_wrong[0, r, c] = True
    loss = OhemCrossEntropy(min_kept=2)
    out = loss(logits, target)
    torch.testing.assert_close(out, per_pixel[is_wrong].mean())
    assert out > F.cross_entropy(logits, target)  # the easy pixels no longer dilute the loss
    # the easy pixels are dropped: making them less confident (still above p = 0.7) changes nothing
    softer = logits.clone()
    softer[:, 0][~is_wrong] = 1.7  # p(target) = e^1.7 / (e^1.7 + 2) = 0.73
    torch.testing.assert_close(loss(softer, target), out)
    # ... and once one of them turns hard (p = 0.58 < 0.7) it counts
    softer[0, 0, 2, 1] = 1.0
    is_wrong[0, 2, 1] = True
    expected = F.cross_entropy(softer, target, reduction="none")[is_wrong].mean()
    torch.testing.assert_close(loss(softer, target), expected)


def test_takes_min_kept_hardest_when_too_few_are_hard():
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (2, 3, 3), generator=gen)
    logits = _confident(target, 4, margin=6.0) + 0.5 * torch.randn(2, 4, 3, 3, generator=gen)
    logits[1, :, 2, 0] = 0.0  # two hard pixels (p = 1/4 < 0.7), fewer than min_kept
    logits[0, :, 1, 1] = 0.0
    per_pixel = F.cross_entropy(logits, target, reduction="none").flatten()
    out = OhemCrossEntropy(min_kept=5)(logits, target)
    top5 = per_pixel.sort(descending=True).values[:5]
    torch.testing.assert_close(out, top5.mean())
    assert out < top5[:2].mean()  # the three hardest easy pixels are kept too, not just the two hard ones


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_fewer_valid_pixels_than_min_kept_uses_all_of_them(batch):
    # the reference implementation indexes past the end here (IndexError)
    gen = torch.Generator().manual_seed(batch)
    target = torch.randint(0, 2, (batch, 2, 2), generator=gen)
    logits = _confident(target, 2, margin=5.0)
    target[0, 0, 0] = 255
    loss = OhemCrossEntropy(min_kept=100_000)
    out = loss(logits.requires_grad_(), target)
    expected = F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(out, expected)
    out.backward()


def test_all_ignored_gives_zero_with_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    out = OhemCrossEntropy(min_kept=10)(logits, target)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_min_kept_zero_and_nothing_hard_is_zero():
    target = torch.zeros(1, 3, 3, dtype=torch.long)
    logits = _confident(target, 2, margin=20.0).requires_grad_()
    out = OhemCrossEntropy(min_kept=0)(logits, target)
    assert out.item() == 0.0
    out.backward()


def test_ignored_pixels_do_not_change_the_loss():
    gen = torch.Generator().manual_seed(2)
    target = torch.randint(0, 3, (1, 4, 4), generator=gen)
    target[0, :2] = 255
    logits = torch.randn(1, 3, 4, 4, generator=gen)
    loss = OhemCrossEntropy(min_kept=3)
    before = loss(logits, target)
    logits[:, :, :2] = 100 * torch.randn(3, 2, 4, generator=gen)
    torch.testing.assert_close(loss(logits, target), before)


def test_fraction_min_kept():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, :] = 255  # 12 labelled pixels
    gen = torch.Generator().manual_seed(3)
    logits = _confident(target.clamp(max=1), 2, margin=9.0) + 0.1 * torch.randn(1, 2, 4, 4, generator=gen)
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")[target != 255]
    out = OhemCrossEntropy(min_kept=0.25)(logits, target)  # ceil(0.25 * 12) = 3 hardest
    torch.testing.assert_close(out, per_pixel.sort(descending=True).values[:3].mean())


@pytest.mark.parametrize("kwargs", [{"thresh": 0.0}, {"thresh": 1.5}, {"min_kept": -1}, {"min_kept": 1.5},
                                    {"min_kept": True}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        OhemCrossEntropy(**kwargs)


def test_multi_head_loss_sums_heads_and_their_sum():
    gen = torch.Generator().manual_seed(4)
    heads = tuple(torch.randn(2, 3, 4, 4, generator=gen, requires_grad=True) for _ in range(3))
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    base = OhemCrossEntropy(min_kept=5)
    crit = MultiHeadLoss(base)
    expected = base(heads[0] + heads[1] + heads[2], target) + sum(base(h, target) for h in heads)
    out = crit(heads, target)
    torch.testing.assert_close(out, expected)
    out.backward()
    assert all(h.grad is not None for h in heads)
    # a single tensor (the evaluation output) is scored directly
    torch.testing.assert_close(crit(heads[0], target), base(heads[0], target))


def _wing_reference(d_px, w=10.0, eps=2.0):
    """Feng et al.'s Wing loss written out with math, for one error in pixels."""
    d = abs(d_px)
    return w * math.log(1 + d / eps) if d < w else d - (w - w * math.log(1 + w / eps))


@pytest.mark.parametrize("d_px", [0.0, 0.5, 3.0, 9.99, 10.0, 25.0])
def test_wing_loss_matches_its_formula_in_pixels(d_px):
    scale = 48.0  # px per unit, as for a 96 px input in [-1, 1] units
    loss = MaskedKeypointLoss("wing", px_per_unit=[scale, scale])
    out = loss(torch.tensor([[d_px / scale, 0.0]]), torch.zeros(1, 2))
    assert out.item() == pytest.approx((_wing_reference(d_px) + 0.0) / 2, rel=1e-5)


def test_wing_loss_is_continuous_and_steeper_than_l1_for_small_errors():
    loss = MaskedKeypointLoss("wing")
    below, above = (loss(torch.tensor([[v]]), torch.zeros(1, 1)).item() for v in (10 - 1e-4, 10 + 1e-4))
    assert above - below == pytest.approx(2e-4, abs=1e-4)
    x = torch.tensor([[1.0]], requires_grad=True)
    loss(x, torch.zeros(1, 1)).backward()
    assert x.grad.item() == pytest.approx(10 / 3)  # w / (eps + |d|); L1's is 1


def test_wing_loss_masks_unlabelled_coordinates_and_scales_per_column():
    loss = MaskedKeypointLoss("wing", px_per_unit=[1.0, 2.0, 5.0, 5.0])
    pred = torch.tensor([[1.0, 1.0, 3.0, 7.0]])
    out = loss(pred, torch.tensor([[0.0, 0.0, float("nan"), float("nan")]]))
    assert out.item() == pytest.approx((_wing_reference(1.0) + _wing_reference(2.0)) / 2, rel=1e-5)


@pytest.mark.parametrize("kwargs", [{"kind": "huber"}, {"wing": (0.0, 2.0)}, {"wing": (10.0, -1.0)},
                                    {"heatmap_weight": -1.0}, {"heatmap_sigma": 0.0}])
def test_masked_keypoint_loss_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        MaskedKeypointLoss(**kwargs)


def _gaussian_logits(cx, cy, h=12, w=12, sigma=1.0):
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))[None, None]


def test_js_divergence_is_zero_on_its_own_gaussian_and_grows_with_the_distance():
    maps = _gaussian_logits(5.0, 7.0)
    at = torch.tensor([[5.0 / 6 - 1, 7.0 / 6 - 1]])  # cell units -> [-1, 1] units on a 12-cell map
    assert gaussian_js_divergence(maps, at).item() == pytest.approx(0.0, abs=1e-6)
    values = [gaussian_js_divergence(maps, at + torch.tensor([[dx, 0.0]])).item() for dx in (0.1, 0.3, 0.6)]
    assert values == sorted(values) and values[0] > 1e-3
    assert values[-1] <= math.log(2) + 1e-6


def test_js_divergence_skips_unlabelled_points_and_stays_finite_off_the_map():
    maps = torch.cat([_gaussian_logits(5.0, 7.0), _gaussian_logits(2.0, 2.0)], dim=1)
    t = torch.tensor([[5.0 / 6 - 1, 7.0 / 6 - 1, float("nan"), float("nan")]])
    assert gaussian_js_divergence(maps, t).item() == pytest.approx(0.0, abs=1e-6)
    assert gaussian_js_divergence(maps, torch.full((1, 4), float("nan"))).item() == 0.0
    far = gaussian_js_divergence(maps, torch.tensor([[30.0, -30.0, 30.0, 30.0]]))
    assert torch.isfinite(far) and far.item() <= math.log(2) + 1e-6


def test_heatmap_loss_adds_the_weighted_js_term_and_trains_the_maps():
    torch.manual_seed(0)
    net = HeatmapKeypointNet(n_outputs=4, image_size=32, return_heatmaps=True).train()
    coords, maps = net(torch.randn(2, 1, 32, 32))
    assert coords.shape == (2, 4) and maps.shape == (2, 2, 8, 8)
    torch.testing.assert_close(coords, soft_argmax(maps))
    target = torch.tensor([[0.1, -0.2, 0.3, 0.4], [0.0, 0.0, float("nan"), float("nan")]])
    plain = MaskedKeypointLoss("l1")(coords, target)
    both = MaskedKeypointLoss("l1", heatmap_weight=0.5)((coords, maps), target)
    torch.testing.assert_close(both, plain + 0.5 * gaussian_js_divergence(maps, target))
    both.backward()
    assert net.heatmaps.weight.grad.abs().sum() > 0
    assert net.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 4)  # evaluation: the coordinates alone


def test_ohem_class_weights_are_a_weighted_mean_over_the_same_pixels():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, generator=gen)
    target = torch.randint(0, 3, (2, 5, 6), generator=gen)
    target[0, 0, :3] = 255
    weight = torch.tensor([1.0, 2.0, 0.5])
    for min_kept in (4, 1000):  # hard pixels above the threshold, or the k hardest (here: all valid)
        plain = OhemCrossEntropy(min_kept=min_kept)
        weighted = OhemCrossEntropy(min_kept=min_kept, weight=weight)
        per = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
        valid = target != 255
        kept = valid & (per > THR) if (valid & (per > THR)).sum() > min(min_kept, valid.sum()) else valid
        w = weight[torch.where(valid, target, 0)] * kept
        torch.testing.assert_close(weighted(logits, target), (w * per).sum() / w.sum())
        torch.testing.assert_close(OhemCrossEntropy(min_kept=min_kept, weight=torch.ones(3))(logits, target),
                                   plain(logits, target))


@pytest.mark.parametrize("weight", [[1.0, 0.0, 1.0], [[1.0, 2.0]]])
def test_ohem_bad_class_weights(weight):
    with pytest.raises(ValueError, match="weight"):
        OhemCrossEntropy(weight=weight)


def test_ohem_boundary_weight_counts_pixels_next_to_another_label_more():
    # left half class 0, right half class 1: columns 2 and 3 touch the other class; column 5 is ignored
    target = torch.zeros(1, 4, 6, dtype=torch.long)
    target[..., 3:] = 1
    target[..., 5] = 255
    loss = OhemCrossEntropy(min_kept=1000, boundary_weight=2.0)
    boundary = loss._boundary(target, target != 255)[0]
    assert boundary[:, 2:4].all() and not boundary[:, :2].any() and not boundary[:, 4:].any()
    logits = torch.randn(1, 2, 4, 6, generator=torch.Generator().manual_seed(0))
    per = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    w = (1.0 + 2.0 * boundary.float())[None] * (target != 255)
    torch.testing.assert_close(loss(logits, target), (w * per).sum() / w.sum())
    torch.testing.assert_close(OhemCrossEntropy(min_kept=1000, boundary_weight=0.0)(logits, target),
                               per[target != 255].mean())
    # combined with class weights: the two multiply
    both = OhemCrossEntropy(min_kept=1000, weight=[1.0, 3.0], boundary_weight=2.0)
    wc = w * torch.tensor([1.0, 3.0])[torch.where(target != 255, target, 0)]
    torch.testing.assert_close(both(logits, target), (wc * per).sum() / wc.sum())


@pytest.mark.parametrize("value", [-1.0, float("inf"), True, "2"])
def test_ohem_bad_boundary_weight(value):
    with pytest.raises(ValueError, match="boundary_weight"):
        OhemCrossEntropy(boundary_weight=value)


def test_ohem_boundary_weight_needs_images():
    with pytest.raises(ValueError, match="boundary_weight needs"):
        OhemCrossEntropy(boundary_weight=1.0)(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))


@pytest.mark.parametrize("kwargs", [{}, {"min_kept": 0.5}, {"weight": [1.0, 2.0, 0.5], "boundary_weight": 2.0},
                                    {"min_kept": 0}])
def test_ohem_scores_several_outputs_as_one_at_a_time(kwargs):
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 6, 6), generator=g)
    target[0, :2] = IGNORE_INDEX
    outputs = [torch.randn(2, 3, 6, 6, generator=g) for _ in range(3)]
    loss = OhemCrossEntropy(**kwargs)
    together = loss.forward_many(outputs, target)
    assert [float(v) for v in together] == [float(loss(o, target)) for o in outputs]
    ignored = torch.full_like(target, IGNORE_INDEX)
    assert [float(v) for v in loss.forward_many(outputs, ignored)] == [0.0, 0.0, 0.0]


def test_multi_head_loss_takes_losses_without_forward_many():
    heads = tuple(torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(2))
    target = torch.randint(0, 3, (1, 4, 4), generator=torch.Generator().manual_seed(9)).to(torch.uint8)
    ce = torch.nn.CrossEntropyLoss()
    expected = ce(heads[0] + heads[1], target.long()) + ce(heads[0], target.long()) + ce(heads[1], target.long())
    assert torch.equal(MultiHeadLoss(ce)(heads, target), expected)
