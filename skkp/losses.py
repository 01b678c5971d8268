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
    weight : sequence of float or None, default=None
        Per-class weights (class balancing): which pixels are hard is decided on
        the unweighted loss, and the kept pixels' losses are then averaged with
        their class's weight (a weighted mean). None weighs every class 1.
        Weights of 1/sqrt(pixel frequency) did not help ``FaceParser`` on ytf68
        (mean F1 0.597 against 0.623 unweighted, docs/benchmarks.md).
    boundary_weight : float, default=0.0
        Boundary-aware term: a labelled pixel with another label among its 8
        labelled neighbours counts ``1 + boundary_weight`` times in the weighted
        mean (times its class weight). Hardness is still judged on the
        unweighted loss. Needs (B, H, W) targets when not 0. ``FaceParser`` uses
        2.0 by default (measured on ytf68, docs/face_parser.md).

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

    def __init__(self, thresh=0.7, min_kept=100_000, ignore_index=IGNORE_INDEX, weight=None, boundary_weight=0.0):
        super().__init__()
        if not (isinstance(thresh, numbers.Real) and 0 < thresh <= 1):
            raise ValueError(f"thresh must be a float in (0, 1]; got {thresh!r}")
        if isinstance(min_kept, bool) or not isinstance(min_kept, numbers.Real) or min_kept < 0 or (
                not isinstance(min_kept, numbers.Integral) and min_kept >= 1):
            raise ValueError(f"min_kept must be an int >= 0 or a float in [0, 1); got {min_kept!r}")
        self.thresh = float(thresh)
        self.min_kept = min_kept
        self.ignore_index = int(ignore_index)
        if weight is not None:
            weight = torch.as_tensor(weight, dtype=torch.float32)
            if weight.ndim != 1 or not bool(torch.all(weight > 0)):
                raise ValueError(f"weight must be a 1-D sequence of positive class weights; got {weight!r}")
        self.weight = weight
        if isinstance(boundary_weight, bool) or not isinstance(boundary_weight, numbers.Real) or not (
                0 <= boundary_weight < math.inf):
            raise ValueError(f"boundary_weight must be a finite float >= 0; got {boundary_weight!r}")
        self.boundary_weight = float(boundary_weight)

    def _boundary(self, target, valid):
        """Labelled pixels with a differently labelled pixel among their 8 labelled neighbours."""
        if target.ndim != 3:
            raise ValueError(f"boundary_weight needs (B, H, W) targets; got shape {tuple(target.shape)}")
        label, mask = target.float()[:, None], valid[:, None]
        # the largest and the smallest labelled label around each pixel (unlabelled ones never win)
        highest = F.max_pool2d(torch.where(mask, label, -math.inf), 3, stride=1, padding=1)
        lowest = -F.max_pool2d(torch.where(mask, -label, -math.inf), 3, stride=1, padding=1)
        return valid & (highest != lowest)[:, 0]

    def forward(self, input, target):
        return self.forward_many([input], target)[0]

    def forward_many(self, inputs, target):
        """The loss of each logits tensor in ``inputs`` against the one ``target``; the pixel counts
        that choose the kept pixels are read back to the host for all of them in one copy (on a
        GPU each read waits for the queued work). Each value is what ``forward`` gives for it."""
        target = target.long()
        # masks and sums instead of boolean indexing: the same values, without nonzero/gather passes
        valid = target != self.ignore_index
        pixel_losses = [F.cross_entropy(x, target, ignore_index=self.ignore_index, reduction="none") for x in inputs]
        hards = [valid & (loss > -math.log(self.thresh)) for loss in pixel_losses]
        counts = [int(n) for n in torch.stack([valid.sum()] + [hard.sum() for hard in hards]).tolist()]
        n_valid = counts[0]
        if n_valid == 0:
            return [x.sum() * 0.0 for x in inputs]
        if isinstance(self.min_kept, numbers.Integral):
            k = min(int(self.min_kept), n_valid)
        else:
            k = int(math.ceil(self.min_kept * n_valid))
        weight = None  # class and boundary weights depend on the target alone: made once
        if self.weight is not None or self.boundary_weight:
            weight = torch.ones_like(pixel_losses[0]) if self.weight is None else \
                self.weight.to(target.device, pixel_losses[0].dtype)[torch.where(valid, target, 0)]
            if self.boundary_weight:
                weight = weight * (1.0 + self.boundary_weight * self._boundary(target, valid).to(weight.dtype))
        return [self._kept_mean(x, loss, valid, hard, n_hard, k, weight)
                for x, loss, hard, n_hard in zip(inputs, pixel_losses, hards, counts[1:])]

    @staticmethod
    def _kept_mean(input, pixel_loss, valid, hard, n_hard, k, weight):
        """The (weighted) mean loss over the hard pixels, or over the ``k`` largest losses when
        fewer than ``k`` pixels are hard."""
        if n_hard > k:
            kept, n_kept = hard, n_hard
        elif k == 0:
            return input.sum() * 0.0
        else:
            ranked = torch.where(valid, pixel_loss, -1.0).flatten()  # ignored pixels are never among the k
            kept = torch.zeros_like(ranked, dtype=torch.bool)
            kept[torch.topk(ranked, k, sorted=False).indices] = True
            kept, n_kept = kept.view_as(valid), k
        if weight is None:
            return torch.where(kept, pixel_loss, 0.0).sum() / n_kept
        w = torch.where(kept, weight, 0.0)
        return (w * pixel_loss).sum() / w.sum()

    def extra_repr(self):
        weight = "" if self.weight is None else f", weight={self.weight.tolist()}"
        boundary = f", boundary_weight={self.boundary_weight}" if self.boundary_weight else ""
        return f"thresh={self.thresh}, min_kept={self.min_kept}, ignore_index={self.ignore_index}{weight}{boundary}"


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
        target = target.long()  # uint8 label maps: converted once, not once per head
        if isinstance(input, (tuple, list)):
            outputs = [sum(input), *input]
            # a loss that scores several outputs at once (OhemCrossEntropy: one read back for all)
            losses = self.loss.forward_many(outputs, target) if hasattr(self.loss, "forward_many") else \
                [self.loss(out, target) for out in outputs]
            total = losses[0]
            for loss in losses[1:]:
                total = total + loss
            return total
        return self.loss(input, target)


class MaskedKeypointLoss(nn.Module):
    """Regression loss over labelled coordinates only; NaN targets are masked out.

    Rows with some missing keypoints still train the labelled ones. The mean is
    taken over the labelled coordinates of the batch (0 with a zero gradient
    when none is labelled).

    Parameters
    ----------
    kind : {"mse", "l1", "smooth_l1", "wing"}
        Per-coordinate loss. "wing" is the Wing loss of Feng et al. (CVPR 2018):
        ``w * log(1 + |d| / eps)`` for ``|d| < w``, ``|d| - C`` beyond (``C``
        makes it continuous), with ``|d|`` in pixels (see ``px_per_unit``): it
        weighs small and medium errors more than L1 does.
    beta : float
        Transition point of the smooth L1 loss.
    px_per_unit : float, sequence of float or None, default=None
        Pixels per target unit, per coordinate; the Wing loss's ``w`` and ``eps``
        are in pixels. None is 1.
    wing : (float, float), default=(10.0, 2.0)
        The Wing loss's ``(w, eps)`` in pixels.
    heatmap_weight : float, default=0.0
        Weight of a supervised heatmap term, used when the network returns
        ``(coordinates, heatmap logits)`` (``HeatmapKeypointNet(return_heatmaps=True)``
        in training): the Jensen-Shannon divergence between each keypoint's
        softmax map and a Gaussian centred on its target, as in Nibali et al.
        (2018, DSNT), averaged over labelled keypoints.
    heatmap_sigma : float, default=1.0
        The Gaussian's standard deviation in heatmap cells.

    Shapes: ``input`` (B, D) predictions, or ``((B, D), (B, D/2, h, w))``;
    ``target`` (B, D) with NaN where unlabelled; returns a scalar.

    Examples
    --------
    >>> loss = MaskedKeypointLoss()
    >>> loss(torch.zeros(1, 4), torch.tensor([[1.0, 1.0, float("nan"), float("nan")]])).item()
    1.0
    >>> wing = MaskedKeypointLoss("wing", wing=(10.0, 2.0))
    >>> round(wing(torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])).item(), 4) == round(10 * math.log(2) / 2, 4)
    True
    """

    def __init__(self, kind="mse", beta=0.02, px_per_unit=None, wing=(10.0, 2.0), heatmap_weight=0.0,
                 heatmap_sigma=1.0):
        super().__init__()
        if kind not in ("mse", "l1", "smooth_l1", "wing"):
            raise ValueError(f"kind must be 'mse', 'l1', 'smooth_l1' or 'wing', got {kind!r}")
        w, eps = (float(v) for v in wing)
        if not (w > 0 and eps > 0):
            raise ValueError(f"wing must be two positive numbers (w, eps), got {wing!r}")
        if not heatmap_weight >= 0 or not heatmap_sigma > 0:
            raise ValueError(f"heatmap_weight must be >= 0 and heatmap_sigma > 0, got {heatmap_weight!r} and "
                             f"{heatmap_sigma!r}")
        self.kind = kind
        self.beta = float(beta)
        self.px_per_unit = None if px_per_unit is None else torch.as_tensor(px_per_unit, dtype=torch.float32)
        self.wing = (w, eps)
        self.heatmap_weight = float(heatmap_weight)
        self.heatmap_sigma = float(heatmap_sigma)

    def forward(self, input, target):
        heatmaps = None
        if isinstance(input, (tuple, list)):
            input, heatmaps = input
        mask = ~torch.isnan(target)
        diff = torch.where(mask, input - torch.nan_to_num(target), torch.zeros_like(input))
        if self.kind == "mse":
            per = diff * diff
        elif self.kind == "l1":
            per = diff.abs()
        elif self.kind == "smooth_l1":
            per = F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none", beta=self.beta)
        else:
            per = self._wing(diff)
        loss = per.sum() / mask.sum().clamp(min=1)
        if heatmaps is not None and self.heatmap_weight > 0:
            loss = loss + self.heatmap_weight * gaussian_js_divergence(heatmaps, target, self.heatmap_sigma)
        return loss

    def _wing(self, diff):
        w, eps = self.wing
        a = diff.abs()
        if self.px_per_unit is not None:
            a = a * self.px_per_unit.to(a.device, a.dtype)
        c = w - w * math.log(1.0 + w / eps)
        return torch.where(a < w, w * torch.log1p(a / eps), a - c)


def gaussian_js_divergence(heatmaps, target, sigma=1.0):
    """Mean Jensen-Shannon divergence between softmax heatmaps and Gaussians on the targets.

    Each keypoint's logits are softmax-normalised over the map; its target, in
    [-1, 1] image units (cell centres as in :func:`skkp.nets.soft_argmax`), gets
    a Gaussian of ``sigma`` cells normalised over the same map. Keypoints with a
    NaN target are left out; with none labelled the result is 0.

    Shapes: ``heatmaps`` (B, K, h, w) logits, ``target`` (B, 2K); returns a scalar.

    Examples
    --------
    >>> maps = torch.full((1, 1, 8, 8), -1e4); maps[0, 0, 4, 4] = 0.0
    >>> near, far = torch.tensor([[0.125, 0.125]]), torch.tensor([[-0.875, -0.875]])
    >>> bool(gaussian_js_divergence(maps, near) < gaussian_js_divergence(maps, far))
    True
    """
    b, k, h, w = heatmaps.shape
    log_p = torch.log_softmax(heatmaps.reshape(b, k, h * w).float(), dim=-1)
    pts = torch.nan_to_num(target.float()).reshape(b, k, 2)
    labelled = ~torch.isnan(target.reshape(b, k, 2)).any(dim=-1)
    # target position in cell units, cell j's centre at j + 0.5
    cx, cy = (pts[..., 0] + 1.0) * (w / 2.0), (pts[..., 1] + 1.0) * (h / 2.0)
    xs = torch.arange(w, device=heatmaps.device, dtype=log_p.dtype) + 0.5
    ys = torch.arange(h, device=heatmaps.device, dtype=log_p.dtype) + 0.5
    d2 = (ys.view(1, 1, h, 1) - cy[..., None, None]) ** 2 + (xs.view(1, 1, 1, w) - cx[..., None, None]) ** 2
    log_q = torch.log_softmax((-d2 / (2.0 * sigma ** 2)).reshape(b, k, h * w), dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    js = 0.5 * ((log_p.exp() * (log_p - log_m)).sum(-1) + (log_q.exp() * (log_q - log_m)).sum(-1))
    return torch.where(labelled, js, 0.0).sum() / labelled.sum().clamp(min=1)
