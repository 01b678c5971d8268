"""Loss functions (``torch.nn.Module``), with shapes in their docstrings."""
import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from .schemas import IGNORE_INDEX

__all__ = ["OhemCrossEntropy", "MultiHeadLoss"]


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hardest pixels (online hard example mining).

    Per-pixel cross-entropy is computed for every labelled pixel. If more than
    ``min_kept`` pixels have a loss above ``-log(thresh)`` (the true class gets a
    probability below ``thresh``), all of them are averaged; otherwise the
    ``min_kept`` hardest pixels are. Pixels labelled ``ignore_index`` never count.

    Works for any batch: with fewer labelled pixels than ``min_kept`` all of them
    are used, and a batch with no labelled pixel gives a loss of 0 that still has
    a (zero) gradient, so ``backward()`` works.

    Parameters
    ----------
    thresh : float, default=0.7
        Probability threshold in (0, 1]; pixels whose true class gets less are hard.
    min_kept : int or float, default=100_000
        Least number of pixels averaged. A float in (0, 1) is a fraction of the
        labelled pixels of the batch.
    ignore_index : int, default=255
        Target value that is ignored.

    Shapes: ``input`` (B, C, H, W) logits (or (B, C) / (B, C, d1, ...)),
    ``target`` (B, H, W) integer labels; returns a scalar.

    Examples
    --------
    >>> loss = OhemCrossEntropy(min_kept=10)
    >>> logits = torch.zeros(2, 3, 4, 4, requires_grad=True)
    >>> target = torch.full((2, 4, 4), 255)
    >>> target[0, 0, 0] = 1
    >>> out = loss(logits, target)
    >>> round(out.item(), 4) == round(math.log(3), 4)
    True
    >>> out.backward()
    """

    def __init__(self, thresh=0.7, min_kept=100_000, ignore_index=IGNORE_INDEX):
        super().__init__()
        if not (isinstance(thresh, numbers.Real) and 0 < thresh <= 1):
            raise ValueError(f"thresh must be a float in (0, 1]; got {thresh!r}")
        if isinstance(min_kept, bool) or not isinstance(min_kept, numbers.Real) or min_kept < 0 or (
                not isinstance(min_kept, numbers.Integral) and min_kept >= 1):
            raise ValueError(f"min_kept must be an int >= 0 or a float in [0, 1); got {min_kept!r}")
        self.thresh = float(thresh)
        self.min_kept = min_kept
        self.ignore_index = int(ignore_index)

    def forward(self, input, target):
        target = target.long()
        pixel_loss = F.cross_entropy(input, target, ignore_index=self.ignore_index, reduction="none")
        # masks and sums instead of boolean indexing: the same values, without nonzero/gather passes
        valid = target != self.ignore_index
        hard = valid & (pixel_loss > -math.log(self.thresh))
        # both counts in one read: on a GPU each read to the host waits for the queued work
        n_valid, n_hard = (int(n) for n in torch.stack([valid.sum(), hard.sum()]).tolist())
        if n_valid == 0:
            return input.sum() * 0.0
        if isinstance(self.min_kept, numbers.Integral):
            k = min(int(self.min_kept), n_valid)
        else:
            k = int(math.ceil(self.min_kept * n_valid))
        if n_hard > k:
            return torch.where(hard, pixel_loss, 0.0).sum() / n_hard
        if k == 0:
            return input.sum() * 0.0
        ranked = torch.where(valid, pixel_loss, -1.0).flatten()  # ignored pixels are never among the k
        return torch.topk(ranked, k, sorted=False).values.mean()

    def extra_repr(self):
        return f"thresh={self.thresh}, min_kept={self.min_kept}, ignore_index={self.ignore_index}"


class MultiHeadLoss(nn.Module):
    """Apply a loss to each output of a multi-head network and to their sum.

    With a tuple or list of logits ``(o_1, ..., o_m)`` the result is
    ``loss(o_1 + ... + o_m) + loss(o_1) + ... + loss(o_m)`` (deep supervision);
    with a single tensor it is just ``loss(input)``, so the same criterion serves
    training (a tuple) and evaluation (the summed logits).

    Parameters
    ----------
    loss : nn.Module
        Loss applied to each output, e.g. :class:`OhemCrossEntropy`.

    Examples
    --------
    >>> crit = MultiHeadLoss(OhemCrossEntropy(min_kept=4))
    >>> heads = tuple(torch.zeros(1, 2, 2, 2) for _ in range(3))
    >>> round(crit(heads, torch.zeros(1, 2, 2, dtype=torch.long)).item(), 4) == round(4 * math.log(2), 4)
    True
    """

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, input, target):
        if isinstance(input, (tuple, list)):
            total = self.loss(sum(input), target)
            for out in input:
                total = total + self.loss(out, target)
            return total
        return self.loss(input, target)


class MaskedKeypointLoss(nn.Module):
    """Regression loss over labelled coordinates only; NaN targets are masked out.

    Rows with some missing keypoints still train the labelled ones. The mean is
    taken over the labelled coordinates of the batch (0 with a zero gradient
    when none is labelled).

    Parameters
    ----------
    kind : {"mse", "l1", "smooth_l1"}
        Per-coordinate loss.
    beta : float
        Transition point of the smooth L1 loss.

    Shapes: ``input`` (B, D) predictions, ``target`` (B, D) with NaN where
    unlabelled; returns a scalar.

    Examples
    --------
    >>> loss = MaskedKeypointLoss()
    >>> loss(torch.zeros(1, 4), torch.tensor([[1.0, 1.0, float("nan"), float("nan")]])).item()
    1.0
    """

    def __init__(self, kind="mse", beta=0.02):
        super().__init__()
        if kind not in ("mse", "l1", "smooth_l1"):
            raise ValueError(f"kind must be 'mse', 'l1' or 'smooth_l1', got {kind!r}")
        self.kind = kind
        self.beta = float(beta)

    def forward(self, input, target):
        mask = ~torch.isnan(target)
        diff = torch.where(mask, input - torch.nan_to_num(target), torch.zeros_like(input))
        if self.kind == "mse":
            per = diff * diff
        elif self.kind == "l1":
            per = diff.abs()
        else:
            per = F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none", beta=self.beta)
        return per.sum() / mask.sum().clamp(min=1)
