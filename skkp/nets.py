"""Keypoint regression networks: pure ``torch.nn`` modules, no sklearn or skorch.

Every network maps a batch of images ``(B, C, S, S)`` (or features ``(B, p)``
for the MLP) to ``(B, n_outputs)`` coordinates. ``ARCHITECTURES`` maps the
``architecture`` names accepted by :class:`skkp.NoseKeypointRegressor` to the
classes; :func:`build_keypoint_net` builds one.
"""
import math

import torch
from torch import nn


def _pooled(size, n_pools):
    """Side length after ``n_pools`` 2x2 max-pools with ``ceil_mode=True``."""
    for _ in range(n_pools):
        size = math.ceil(size / 2)
    return size


def _dense(n_in, n_out):
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(inplace=True)]


class _ChannelsLastMixin:
    """Optionally keep parameters and activations in ``channels_last`` layout.

    On CPUs with oneDNN this layout makes convolutions markedly faster (see
    ``benchmarks/bench_keypoint_speed.py``). The layout never changes results
    beyond floating-point rounding.
    """

    def _set_layout(self, channels_last):
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def _layout(self, x):
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


class InceptionModule(nn.Module):
    """Two parallel branches, Conv3x3(f1)-BN-ReLU and Conv5x5(f2)-BN-ReLU,
    concatenated along channels and followed by 2x2 max-pooling.

    Shapes: ``(B, in_channels, H, W) -> (B, f1 + f2, ceil(H/2), ceil(W/2))``.
    """

    def __init__(self, in_channels, f1, f2):
        super().__init__()
        self.branch3 = nn.Sequential(nn.Conv2d(in_channels, f1, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(f1), nn.ReLU(inplace=True))
        self.branch5 = nn.Sequential(nn.Conv2d(in_channels, f2, 5, padding=2, bias=False),
                                     nn.BatchNorm2d(f2), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x):
        return self.pool(torch.cat([self.branch3(x), self.branch5(x)], dim=1))


class InceptionKeypointNet(_ChannelsLastMixin, nn.Module):
    """The reference network: five inception modules and an MLP head.

    Modules (f1, f2) = (64, 32), (64, 32), (128, 32), (128, 32), (256, 64); the
    flattened features (3x3x320 = 2880 at 96x96) feed Dense 1024-BN-ReLU,
    512-BN-ReLU, 128-BN-ReLU and a linear layer of ``n_outputs``.
    ``l2_penalties`` names the first three dense weights with their L2
    coefficients (0.05, 0.02, 0.01); the estimator applies them as per-group
    weight decay.

    Parameters
    ----------
    n_outputs : int
        Number of regressed values (2K for K keypoints).
    image_size : int
        Side of the square input images.
    in_channels : int
    filters : sequence of (int, int)
        (f1, f2) of each inception module.
    hidden : sequence of int
        Widths of the dense layers of the head.
    channels_last : bool
        Use the ``channels_last`` memory format.

    Examples
    --------
    >>> net = InceptionKeypointNet(n_outputs=14, image_size=96)
    >>> net.n_flat
    2880
    >>> net.eval()(torch.zeros(2, 1, 96, 96)).shape
    torch.Size([2, 14])
    """

    def __init__(self, n_outputs, image_size=96, in_channels=1,
                 filters=((64, 32), (64, 32), (128, 32), (128, 32), (256, 64)),
                 hidden=(1024, 512, 128), channels_last=False):
        super().__init__()
        blocks, c = [], in_channels
        for f1, f2 in filters:
            blocks.append(InceptionModule(c, f1, f2))
            c = f1 + f2
        self.features = nn.Sequential(*blocks)
        side = _pooled(image_size, len(filters))
        self.n_flat = c * side * side
        layers, n_in = [], self.n_flat
        for width in hidden:
            layers += _dense(n_in, width)
            n_in = width
        layers.append(nn.Linear(n_in, n_outputs))
        self.head = nn.Sequential(*layers)
        coefs = (0.05, 0.02, 0.01)
        self.l2_penalties = {f"head.{3 * i}.weight": coef for i, coef in enumerate(coefs[:len(hidden)])}
        self._set_layout(channels_last)

    def forward(self, x):
        x = self.features(self._layout(x))
        return self.head(torch.flatten(x, 1))


class PlainCNN(_ChannelsLastMixin, nn.Module):
    """Baseline: conv-BN-ReLU-pool stacks, then Dense(``hidden``)-ReLU and a linear output.

    Examples
    --------
    >>> PlainCNN(n_outputs=10, image_size=32).eval()(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 10])
    """

    def __init__(self, n_outputs, image_size=96, in_channels=1, channels=(32, 64, 128, 256), hidden=512,
                 dropout=0.1, channels_last=False):
        super().__init__()
        layers, c = [], in_channels
        for width in channels:
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            c = width
        self.features = nn.Sequential(*layers)
        side = _pooled(image_size, len(channels))
        self.n_flat = c * side * side
        self.head = nn.Sequential(nn.Linear(self.n_flat, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_outputs))
        self._set_layout(channels_last)

    def forward(self, x):
        return self.head(torch.flatten(self.features(self._layout(x)), 1))


class MLPKeypointNet(nn.Module):
    """Baseline: one hidden layer on raw pixels (or any feature vector).

    Examples
    --------
    >>> MLPKeypointNet(n_outputs=4, n_features=20).eval()(torch.zeros(3, 20)).shape
    torch.Size([3, 4])
    """

    def __init__(self, n_outputs, n_features, hidden=256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, n_outputs))

    def forward(self, x):
        return self.net(x)


ARCHITECTURES = {"inception": InceptionKeypointNet, "cnn": PlainCNN, "mlp": MLPKeypointNet}


def build_keypoint_net(architecture, n_outputs, image_size=96, n_features=None, channels_last=False, **kwargs):
    """Build the network named ``architecture`` (a key of ``ARCHITECTURES``).

    ``n_features`` is the input length for the MLP (defaults to image_size**2);
    ``kwargs`` go to the network's constructor.

    Examples
    --------
    >>> type(build_keypoint_net("cnn", 14, image_size=48)).__name__
    'PlainCNN'
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}.")
    cls = ARCHITECTURES[architecture]
    if cls is MLPKeypointNet:
        return cls(n_outputs, n_features or image_size * image_size, **kwargs)
    return cls(n_outputs, image_size=image_size, channels_last=channels_last, **kwargs)
