"""OHEM cross-entropy and the multi-head (deep supervision) loss."""
import math

import pytest
import torch
from torch.nn import functional as F

from skkp.losses import MultiHeadLoss, OhemCrossEntropy

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
