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
        self.output_layer = f"head.{len(layers) - 1}"
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
        self.head = nn.Sequential(nn.Linear(self.n_flat, hidden), nn.ReLU(inplace=True), GeneratorDropout(dropout),
                                  nn.Linear(hidden, n_outputs))
        self.output_layer = "head.3"
        self._set_layout(channels_last)

    def forward(self, x):
        return self.head(torch.flatten(self.features(self._layout(x)), 1))


class GeneratorDropout(nn.Dropout):
    """``nn.Dropout`` that draws its masks from ``self.generator`` when one is set.

    ``nn.Dropout`` draws from torch's process-wide generator, so another thread
    drawing random numbers would change a training run; the estimators give each
    fit its own generator (and remove it before pickling). With ``generator=None``
    it draws from the global generator like ``nn.Dropout``.

    Examples
    --------
    >>> drop = GeneratorDropout(0.5)
    >>> drop.generator = torch.Generator().manual_seed(0)
    >>> a = drop(torch.ones(1000))
    >>> drop.generator = torch.Generator().manual_seed(0)
    >>> bool(torch.equal(a, drop(torch.ones(1000)))), sorted(set(a.tolist()))
    (True, [0.0, 2.0])
    """

    generator = None

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)


class MLPKeypointNet(nn.Module):
    """Baseline: one hidden layer on raw pixels (or any feature vector).

    Parameters
    ----------
    n_outputs : int
    n_features : int
        Input values per sample (the pixels of an image).
    hidden : int, default=256
        Units in the hidden layer.
    standardise_input : bool, default=False
        Centre each sample's input vector on its own mean and divide it by its
        own standard deviation before the dense layers (per-image contrast
        normalisation, no parameters). Meant for images, where it takes
        brightness and contrast out of what the one hidden layer must learn:
        ``NoseKeypointRegressor`` turns it on for image inputs. Not for feature
        matrices, whose columns have different units.

    Examples
    --------
    >>> MLPKeypointNet(n_outputs=4, n_features=20).eval()(torch.zeros(3, 20)).shape
    torch.Size([3, 4])
    >>> net = MLPKeypointNet(n_outputs=2, n_features=4, standardise_input=True).eval()
    >>> x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    >>> bool(torch.allclose(net(x), net(10 * x + 5), atol=1e-5))  # brightness and contrast are gone
    True
    """

    def __init__(self, n_outputs, n_features, hidden=256, standardise_input=False):
        super().__init__()
        self.standardise_input = bool(standardise_input)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, n_outputs))
        self.output_layer = "net.3"

    def forward(self, x):
        if self.standardise_input:
            x = x.flatten(1)
            # the std of a constant image is 0: the floor keeps it at zeros instead of NaN
            x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-3)
        return self.net(x)


def _conv(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class HeatmapKeypointNet(_ChannelsLastMixin, nn.Module):
    """Encoder-decoder with a soft-argmax head (integral regression).

    A strided encoder goes down to 1/16 of the input, a decoder with skip
    connections comes back to 1/4, and a 1x1 convolution gives one heatmap per
    keypoint. A spatial softmax turns each heatmap into a probability map
    whose expected position is the keypoint, in [-1, 1] image units, so the
    output has the same meaning as the regression networks' and the whole
    network trains end to end on coordinates. Convolutions keep the
    translation equivariance that dense heads lose, which helps with small
    data sets.

    Parameters
    ----------
    n_outputs : int
        2K for K keypoints (must be even).
    image_size : int
    in_channels : int
    width : int
        Channels of the first stage; stages use 1, 2, 4 and 8 times it.
    depth : int, default=2
        3x3 convolutions per encoder stage (the first one strided).
    heatmap_stride : {4, 2}, default=4
        Heatmap resolution relative to the input: 4 gives 24x24 heatmaps at 96
        px; 2 adds a decoder step to 48x48 for finer localisation.
    return_heatmaps : bool, default=False
        In training mode, return ``(coordinates, heatmap logits)`` for a loss
        that also supervises the heatmaps (``MaskedKeypointLoss(heatmap_weight=...)``);
        evaluation mode always returns the coordinates alone.
    channels_last : bool

    Examples
    --------
    >>> net = HeatmapKeypointNet(n_outputs=18, image_size=96).eval()
    >>> out = net(torch.zeros(2, 1, 96, 96))
    >>> out.shape, bool(out.abs().max() <= 1)
    (torch.Size([2, 18]), True)
    """

    def __init__(self, n_outputs, image_size=96, in_channels=1, width=16, depth=2, heatmap_stride=4,
                 return_heatmaps=False, channels_last=False):
        super().__init__()
        if n_outputs % 2:
            raise ValueError(f"n_outputs must be even (x, y per keypoint), got {n_outputs}.")
        if heatmap_stride not in (2, 4):
            raise ValueError(f"heatmap_stride must be 2 or 4, got {heatmap_stride!r}.")
        if int(depth) < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}.")
        w, d = width, int(depth)

        def stage(c_in, c_out):  # a strided conv, then depth - 1 more
            return nn.Sequential(_conv(c_in, c_out, 2), *(_conv(c_out, c_out) for _ in range(d - 1)))
        self.heatmap_stride = heatmap_stride
        self.return_heatmaps = bool(return_heatmaps)
        self.enc1 = _conv(in_channels, w, stride=2)  # 1/2
        self.enc2 = stage(w, 2 * w)                  # 1/4
        self.enc3 = stage(2 * w, 4 * w)              # 1/8
        self.enc4 = stage(4 * w, 8 * w)              # 1/16
        self.lat4 = nn.Conv2d(8 * w, 4 * w, 1)
        self.dec3 = _conv(4 * w, 4 * w)
        self.lat3 = nn.Conv2d(4 * w, 2 * w, 1)
        self.dec2 = _conv(2 * w, 2 * w)
        if heatmap_stride == 2:
            self.lat2 = nn.Conv2d(2 * w, w, 1)
            self.dec1 = _conv(w, w)
        self.heatmaps = nn.Conv2d(w if heatmap_stride == 2 else 2 * w, n_outputs // 2, 1)
        self.output_layer = "heatmaps"
        self._set_layout(channels_last)

    @staticmethod
    def _up_add(x, skip):
        return skip + nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x):
        x = self._layout(x)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        d3 = self.dec3(self._up_add(self.lat4(e4), e3))
        d = self.dec2(self._up_add(self.lat3(d3), e2))
        if self.heatmap_stride == 2:
            d = self.dec1(self._up_add(self.lat2(d), e1))
        maps = self.heatmaps(d)
        if self.return_heatmaps and self.training:
            return soft_argmax(maps), maps
        return soft_argmax(maps)


def soft_argmax(heatmaps):
    """Expected (x, y) of each softmax-normalised heatmap, in [-1, 1] image units.

    Shapes: ``(B, K, h, w) -> (B, 2K)`` as x0, y0, x1, y1, ... A cell's centre
    is at ``(j + 0.5) / w * 2 - 1``, so the image edges are at -1 and 1.

    Examples
    --------
    >>> h = torch.full((1, 1, 4, 4), -1e4); h[0, 0, 1, 3] = 0.0
    >>> soft_argmax(h).tolist()
    [[0.75, -0.25]]
    """
    b, k, h, w = heatmaps.shape
    prob = torch.softmax(heatmaps.reshape(b, k, h * w).float(), dim=-1).reshape(b, k, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=prob.dtype) + 0.5) * (2.0 / w) - 1.0
    ys = (torch.arange(h, device=heatmaps.device, dtype=prob.dtype) + 0.5) * (2.0 / h) - 1.0
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1).reshape(b, 2 * k)


ARCHITECTURES = {"inception": InceptionKeypointNet, "cnn": PlainCNN, "mlp": MLPKeypointNet,
                 "heatmap": HeatmapKeypointNet}


def transfer_weights(source, target, new_output=False):
    """Copy the weights (and BatchNorm statistics) of ``source`` into ``target``, in place.

    Both networks must be of the same class and shape, except that with
    ``new_output=True`` the layer named by ``target.output_layer`` may differ in
    size: it then keeps ``target``'s own (fresh) weights. Anything else that
    differs is a ``ValueError`` naming the first layer that does not fit.

    Returns
    -------
    kept_new : list of str
        The ``target`` entries that were not copied (the new output layer).

    Examples
    --------
    >>> a, b = PlainCNN(14, image_size=32), PlainCNN(10, image_size=32)
    >>> transfer_weights(a, b, new_output=True)
    ['head.3.weight', 'head.3.bias']
    >>> bool(torch.equal(a.features[0].weight, b.features[0].weight))
    True
    """
    if type(source) is not type(target):
        raise ValueError(f"cannot start a {type(target).__name__} from the weights of a {type(source).__name__}.")
    src, dst = source.state_dict(), target.state_dict()
    if set(src) != set(dst):
        odd = sorted(set(src) ^ set(dst))
        raise ValueError(f"the two {type(target).__name__} networks differ in their layers ({odd[:3]} ...): "
                         f"they were built with different network options (net_kwargs module__*).")
    prefix = getattr(target, "output_layer", None)
    kept_new = []
    for key, value in src.items():
        if value.shape == dst[key].shape:
            dst[key] = value
        elif new_output and prefix is not None and key.startswith(prefix + "."):
            kept_new.append(key)
        else:
            raise ValueError(f"layer {key!r} has shape {tuple(value.shape)} in the starting network but "
                             f"{tuple(dst[key].shape)} here: the networks were built with another image_size, width "
                             f"or net_kwargs module__* option.")
    target.load_state_dict(dst)
    return kept_new


def zero_output_layer(net):
    """Set the weights and bias of ``net``'s output layer (``net.output_layer``) to zero, in place.

    A direct-regression network trained on standardised targets then starts at
    the mean training shape (output 0) instead of at random coordinates; the
    layers below get gradients once the output weights move off zero.

    Examples
    --------
    >>> net = PlainCNN(n_outputs=4, image_size=32).eval()
    >>> zero_output_layer(net)
    >>> net(torch.randn(2, 1, 32, 32)).abs().max().item()
    0.0
    """
    layer = net.get_submodule(net.output_layer)
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


def seed_output_layer(source, target, point_map):
    """Start each output point of ``target`` from a point of ``source``, in place: point ``k`` of
    ``target`` gets the output weights of point ``point_map[k]`` of ``source`` (its heatmap
    channel, or its x and y rows), so the new layer first predicts those points.

    Examples
    --------
    >>> a, b = PlainCNN(6, image_size=32), PlainCNN(4, image_size=32)
    >>> seed_output_layer(a, b, [2, 0])
    >>> bool(torch.equal(b.head[3].weight[0:2], a.head[3].weight[4:6]))
    True
    """
    old, new = source.get_submodule(source.output_layer), target.get_submodule(target.output_layer)
    per_point = new.weight.shape[0] // len(point_map)
    with torch.no_grad():
        for k, j in enumerate(point_map):
            new.weight[k * per_point:(k + 1) * per_point] = old.weight[j * per_point:(j + 1) * per_point]
            if new.bias is not None and old.bias is not None:
                new.bias[k * per_point:(k + 1) * per_point] = old.bias[j * per_point:(j + 1) * per_point]


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
