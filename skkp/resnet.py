"""ResNet18 backbone and a three-head face-parsing network (pure PyTorch).

Parameter names follow torchvision's ``resnet18`` state dict (``conv1``, ``bn1``,
``layer1`` .. ``layer4`` with BasicBlocks ``conv1/bn1/conv2/bn2/downsample.0/.1``),
so ImageNet weights can be loaded from a local ``.pth`` file with
:func:`load_backbone_weights` -- no download, no torchvision dependency.
"""
import functools
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: F401  (the docstring examples use it)

from .augment import normalize_images
from .nets import _ChannelsLastMixin

__all__ = ["BasicBlock", "ResNet18Backbone", "ParsingHead", "TopDownHead", "MultiHeadParsingNet",
           "load_backbone_weights", "upsample_bilinear", "upsample_sum"]

_STAGE_CHANNELS = (64, 128, 256, 512)


def _scaled(channels, width):
    """Channel count ``channels * width``, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def _conv3x3(in_ch, out_ch, stride=1):
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


@functools.lru_cache(maxsize=64)
def _interp_matrix(n_in, n_out, dtype, device):
    """(n_out, n_in) weights of 1-D linear interpolation, PyTorch's ``align_corners=False`` rule.

    Cached: training asks for the same few sizes at every step, and on a GPU
    each new matrix would be built on the CPU and copied over. Callers must not
    modify the returned tensor."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - w1, accumulate=True)
    m.index_put_((rows, i1), w1, accumulate=True)
    return m.to(dtype=dtype, device=device)


def upsample_bilinear(x, size, rows=None):
    """Bilinear resize of (..., h, w) to ``size``, equal to ``F.interpolate(x, size,
    mode="bilinear", align_corners=False)`` but computed as two matrix products.

    Bilinear interpolation is separable and linear, so it is ``A_h @ x @ A_w.T``;
    the products and their gradients run as matrix multiplications. On a 2-core
    CPU (one measurement, batch 8, 10 classes, 32x32 to 128x128) forward plus
    backward took 2.5x less time than the interpolation kernel.

    Examples
    --------
    >>> x = torch.randn(2, 3, 7, 5)
    >>> ref = F.interpolate(x, size=(20, 16), mode="bilinear", align_corners=False)
    >>> bool(torch.allclose(upsample_bilinear(x, (20, 16)), ref, atol=1e-5))
    True

    ``rows`` (a slice of output rows) computes only those rows, so a large output can be
    made piece by piece in bounded memory:

    >>> bool(torch.allclose(upsample_bilinear(x, (20, 16), rows=slice(4, 9)), ref[..., 4:9, :], atol=1e-5))
    True
    """
    (h, w), (H, W) = x.shape[-2:], tuple(size)
    if (h, w) == (H, W):
        return x if rows is None else x[..., rows, :]
    rows_matrix = _interp_matrix(h, H, x.dtype, x.device)
    if rows is not None:
        rows_matrix = rows_matrix[rows]
    return rows_matrix @ x @ _interp_matrix(w, W, x.dtype, x.device).T


def upsample_sum(xs, size):
    """``sum(upsample_bilinear(x, size) for x in xs)`` for tensors (..., h_k, w_k) of any sizes,
    as one matrix product with no full-size intermediates.

    Each term is ``A_k @ x_k @ B_k.T``, so the sum is ``[A_1 x_1 | ... | A_K x_K] @ [B_1 | ... | B_K].T``
    (blocks side by side). Equal to the sum of the resized tensors up to float rounding; for
    FaceParser's four heads at 448 px it took a third of the time on a 2-core CPU (width 0.125,
    batch 16).

    Examples
    --------
    >>> xs = [torch.randn(2, 3, 10, 12), torch.randn(2, 3, 5, 6)]
    >>> ref = upsample_bilinear(xs[0], (20, 24)) + upsample_bilinear(xs[1], (20, 24))
    >>> bool(torch.allclose(upsample_sum(xs, (20, 24)), ref, atol=1e-5))
    True
    """
    (H, W), x0 = tuple(size), xs[0]
    left = torch.cat([_interp_matrix(x.shape[-2], H, x.dtype, x.device) @ x for x in xs], dim=-1)
    right = torch.cat([_interp_matrix(x.shape[-1], W, x0.dtype, x0.device) for x in xs], dim=1)
    return left @ right.T


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers and a residual connection.

    ``downsample`` (1x1 conv + BN) is added when the stride or the channel count
    changes, with torchvision's names ``downsample.0`` and ``downsample.1``.

    Shapes: (B, in_ch, H, W) -> (B, out_ch, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_ch, out_ch, stride=1):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def check_stages(stages):
    """``stages`` as a sorted tuple of distinct backbone stages among 1, 2, 3, 4 (strides 4, 8,
    16, 32); ValueError otherwise.

    Examples
    --------
    >>> check_stages([4, 1])
    (1, 4)
    """
    stages = tuple(int(k) for k in stages)
    if not stages or any(k not in (1, 2, 3, 4) for k in stages) or len(set(stages)) != len(stages):
        raise ValueError(f"stages must be distinct values among 1, 2, 3, 4; got {stages!r}")
    return tuple(sorted(stages))


class ResNet18Backbone(nn.Module):
    """ResNet18 without its classifier, returning the features of chosen stages.

    Parameters
    ----------
    width : float, default=1.0
        Channel multiplier; 1.0 is the standard ResNet18 (64, 128, 256, 512
        channels) and is the only width that can load torchvision weights.
    in_channels : int, default=3
        Channels of the input image.
    stages : tuple of int, default=(2, 3, 4)
        Which stages' outputs ``forward`` returns (1 to 4: strides 4, 8, 16,
        32). Layers after the last one asked for are not run.

    Shapes: (B, in_channels, H, W) -> one map per stage, with ``out_channels``
    channels (by default three, at strides 8, 16 and 32).

    Examples
    --------
    >>> net = ResNet18Backbone(width=0.125)
    >>> [tuple(f.shape) for f in net(torch.zeros(1, 3, 64, 64))]
    [(1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2)]
    """

    def __init__(self, width=1.0, in_channels=3, stages=(2, 3, 4)):
        super().__init__()
        self.stages = check_stages(stages)
        chans = [_scaled(c, width) for c in _STAGE_CHANNELS]
        self.conv1 = nn.Conv2d(in_channels, chans[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(chans[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(chans[0], chans[0], 1)
        self.layer2 = self._stage(chans[0], chans[1], 2)
        self.layer3 = self._stage(chans[1], chans[2], 2)
        self.layer4 = self._stage(chans[2], chans[3], 2)
        self.out_channels = tuple(chans[k - 1] for k in self.stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_ch, out_ch, stride):
        return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1))

    def forward(self, x, stem=False):
        """The chosen stages' features (finest first); with ``stem``, the stride-2 stem output
        (before the max-pooling) comes first as well."""
        x = self.relu(self.bn1(self.conv1(x)))
        feats = [x] if stem else []
        x = self.maxpool(x)
        for k, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            if k > self.stages[-1]:
                break
            x = layer(x)
            if k in self.stages:
                feats.append(x)
        return tuple(feats)


class TopDownHead(nn.Module):
    """A parsing head at stride 2 on features fused top-down (as in a feature pyramid network).

    Each input map (the backbone's stride-2 stem first, then its stages, finest first) is
    projected to ``channels`` by a 1x1 conv-BN; from the coarsest one down, the running sum is
    upsampled (bilinear) to the next finer map and added to it. A BasicBlock and a 1x1
    classifier turn the stride-2 sum into logits.

    Shapes: maps (B, c_k, h_k, w_k), finest first -> (B, n_classes, h_0, w_0).
    """

    def __init__(self, in_channels, channels, n_classes):
        super().__init__()
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), nn.BatchNorm2d(channels)) for c in in_channels)
        self.block = BasicBlock(channels, channels)
        self.classifier = nn.Conv2d(channels, n_classes, 1)

    def forward(self, feats):
        top = None
        for lateral, f in zip(reversed(self.laterals), reversed(feats)):
            top = lateral(f) if top is None else lateral(f) + upsample_bilinear(top, f.shape[-2:])
        return self.classifier(self.block(top))


class ParsingHead(nn.Module):
    """Output head: a BasicBlock, a 3x3 conv-BN-ReLU and a 1x1 conv to ``n_classes``.

    Shapes: (B, in_ch, h, w) -> (B, n_classes, h, w) logits.
    """

    def __init__(self, in_ch, mid_ch, n_classes):
        super().__init__()
        self.block = BasicBlock(in_ch, mid_ch)
        self.conv = nn.Sequential(_conv3x3(mid_ch, mid_ch), nn.BatchNorm2d(mid_ch), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(mid_ch, n_classes, 1)

    def forward(self, x):
        return self.classifier(self.conv(self.block(x)))


class MultiHeadParsingNet(_ChannelsLastMixin, nn.Module):
    """ResNet18 backbone with one parsing head on each of stages 2, 3 and 4.

    Each head's logits are upsampled (bilinear) to the input size. In training
    mode ``forward`` returns the tuple of the head logits, so a loss can be
    applied to each head and to their sum (see
    :class:`skkp.losses.MultiHeadLoss`); in eval mode it returns their sum, whose
    argmax over channels is the label map.

    Parameters
    ----------
    n_classes : int
        Number of output classes.
    width : float, default=1.0
        Channel multiplier of the backbone and the heads.
    in_channels : int, default=3
        Channels of the input image.
    head_channels : int or None, default=None
        Channels inside each head; ``None`` means ``round(128 * width)``.
    head_stages : tuple of int, default=(2, 3, 4)
        Backbone stages that get a head. The default is the reference design;
        adding stage 1 (stride 4) gives a finer head for small parts (eyes,
        brows) on low-resolution inputs, for about a fifth more compute.
        :class:`skkp.FaceParser` builds ``(1, 2, 3, 4)`` by default (its ``heads``).
    channels_last : bool, default=False
        Keep weights and convolution activations in the ``channels_last`` memory
        format (what :class:`skkp.FaceParser` uses on CUDA); results are the same up
        to floating-point rounding.
    top_down : bool, default=False
        Add a :class:`TopDownHead` at stride 2 (the first of the heads' outputs): the
        stem's and the head stages' features fused from the coarsest down, with
        ``round(64 * width)`` channels.

    Shapes: (B, in_channels, H, W) -> (B, n_classes, H, W) (eval) or a tuple of
    one such tensor per head (train).

    Examples
    --------
    >>> net = MultiHeadParsingNet(n_classes=19, width=0.125).eval()
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 19, 32, 32])
    >>> [tuple(o.shape) for o in net.train()(torch.zeros(2, 3, 32, 32))]
    [(2, 19, 32, 32), (2, 19, 32, 32), (2, 19, 32, 32)]
    """

    channels_last = False  # for networks pickled before the option existed

    def __init__(self, n_classes, width=1.0, in_channels=3, head_channels=None, head_stages=(2, 3, 4),
                 channels_last=False, top_down=False):
        super().__init__()
        self.backbone = ResNet18Backbone(width=width, in_channels=in_channels, stages=head_stages)
        mid = _scaled(128, width) if head_channels is None else int(head_channels)
        self.heads = nn.ModuleList(ParsingHead(c, mid, n_classes) for c in self.backbone.out_channels)
        stem = _scaled(_STAGE_CHANNELS[0], width)
        self.top_down = (TopDownHead((stem,) + self.backbone.out_channels, stem, n_classes) if top_down
                         else None)
        self._set_layout(channels_last)

    def head_logits(self, x):
        """The heads' logits, each (B, n_classes, H, W), in any mode (finest first).

        ``x`` is a normalised float batch (B, 3, H, W), or uint8 RGB (B, H, W, 3), which is
        normalised first, on its device, as :func:`skkp.augment.normalize_image` does on the
        host: FaceParser's batches travel to the GPU as uint8, a quarter of the bytes, and the
        host does no float work per pixel."""
        logits, size = self._heads_at_stride(x)
        return tuple(upsample_bilinear(o, size) for o in logits)

    def _heads_at_stride(self, x):
        """(each head's logits at its own stride, before upsampling; the input's (H, W))."""
        if x.dtype == torch.uint8:
            x = normalize_images(x)  # channels-last strides: kept by a channels_last network
            if not self.channels_last:
                x = x.contiguous()
        top_down = getattr(self, "top_down", None)  # None in networks pickled before the option existed
        feats = self.backbone(self._layout(x), stem=top_down is not None)
        if top_down is None:
            return [head(f) for head, f in zip(self.heads, feats)], x.shape[-2:]
        return [top_down(feats)] + [head(f) for head, f in zip(self.heads, feats[1:])], x.shape[-2:]

    def forward(self, x):
        if self.training:
            return self.head_logits(x)
        return upsample_sum(*self._heads_at_stride(x))  # the heads' upsampled sum, in one product


def load_backbone_weights(module, path):
    """Load a torchvision ``resnet18`` state dict from a local file into a backbone.

    ``fc.*`` entries (the ImageNet classifier) are ignored. Nothing is downloaded.

    Parameters
    ----------
    module : ResNet18Backbone or nn.Module with a ``backbone`` attribute
        Where the weights go; must have ``width=1.0`` and 3 input channels.
    path : str or path-like
        A ``.pth`` file holding the state dict (or a dict with a ``"state_dict"``
        entry), e.g. saved with ``torch.save(resnet18().state_dict(), path)``.

    Returns
    -------
    module : the module passed in, with the weights loaded.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If keys are missing or unexpected, or a shape differs (for instance a
        ``width`` other than 1.0).

    Examples
    --------
    >>> import tempfile, os
    >>> src = ResNet18Backbone()
    >>> path = os.path.join(tempfile.mkdtemp(), "r18.pth")
    >>> torch.save(src.state_dict(), path)
    >>> dst = load_backbone_weights(ResNet18Backbone(), path)
    >>> bool(torch.equal(dst.conv1.weight, src.conv1.weight))
    True
    """
    backbone = getattr(module, "backbone", module)
    if not isinstance(backbone, ResNet18Backbone):
        raise TypeError("module must be a ResNet18Backbone or have one as its `backbone` attribute; "
                        f"got {type(module).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone_weights file not found: {str(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{str(path)!r} does not hold a state dict (a mapping of names to tensors); "
                         f"got {type(state).__name__}")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{str(path)!r} does not match a torchvision resnet18 backbone: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(
                f"shape mismatch for {k!r}: file has {tuple(state[k].shape)}, network has {tuple(v.shape)}; "
                "ImageNet weights need width=1.0 and 3 input channels")
    backbone.load_state_dict(state, strict=True)
    return module
