"""The training recipe of each keypoint architecture, in one place.

The heatmap network answers in [-1, 1] units of the image by construction (a
soft-argmax), so it trains on those units directly. The three direct-regression
networks (``cnn``, ``inception``, ``mlp``) end in a dense layer that outputs the
coordinates; they used to train on the same [-1, 1] units and did not learn
(``cnn`` stayed at the mean predictor on ytf68, ``inception`` was worse than it)
because of how they were trained, not because of their layers. What each of them
needs (measured in docs/keypoints.md, "What was wrong with the direct-regression
networks"):

- **standardised targets** (all three): nose points spread over about 0.1 of the
  [-1, 1] range, so an Adam step (about ``lr`` on every weight of a dense layer
  with hundreds or thousands of inputs) moved the output by more than that
  spread. Per-coordinate standardisation (:class:`skkp._keypoint_data.KeypointFrame`
  with ``standardise_targets=True``) gives the outputs unit spread;
- **a lower learning rate** (all three: 5e-4 instead of the heatmap's 2e-3):
  an Adam step changes every weight by about ``lr``, so a dense unit with
  thousands of inputs (``cnn``: 9216 at 96 px, ``mlp``: the pixels) moves its
  input sum by ``lr`` times thousands; at 2e-3 the ``cnn``'s validation error on
  ytf68 stayed at the mean predictor's (5.1 px) for four epochs, at 5e-4 it was
  2.72 px after one;
- **a zero output layer** (``cnn``, ``mlp``): the untrained network predicts the
  mean shape. Not for ``inception``: with its batch-normalised dense head a zero
  output layer stalled training (0.98 px against 0.44 px on synthetic noses at
  48 px, 15 epochs, lr 2e-3, two seeds);
- **the loss** (``loss="auto"``): the Wing loss for ``heatmap``. Trained on ytf68
  as labelled, its NME on held-out faces labelled once fell from 4.00% / 3.87% to
  3.70% / 3.70% (seeds 0 / 1, docs/benchmarks.md); trained without ytf68's
  wrongly labelled rows it was no better than L1 (3.95% against 3.84%), so what
  it adds is robustness to wrong labels. L1 for the other three, whose recipe
  above was measured with it;
- **per-image input standardisation** (``mlp`` on images): each image is
  centred on its own mean and divided by its own standard deviation before the
  hidden layer, so the one hidden layer need not learn brightness and contrast.
  On synthetic noses (1500 images, 150 epochs) the ``mlp`` went from 3.6x /
  3.0x / 3.4x better than the mean predictor (frontal / side / bottom) to
  4.6x / 3.6x / 4.4x, and to 4.9x / 4.1x / 4.6x at 400 epochs; on ytf68 from
  2.91 to 2.60 px (docs/keypoints.md);
- **the per-layer L2 penalties as decoupled decay** (``inception``'s c = 0.05,
  0.02, 0.01 on its first three dense layers): see :class:`DecoupledL2Adam`.
"""
import torch

#: Per-architecture recipe: ``lr`` (Adam's learning rate when ``lr="auto"``), ``loss`` (the loss when
#: ``loss="auto"``), ``standardise_targets`` (train on per-coordinate standardised coordinates),
#: ``zero_output`` (start the output layer at zero, i.e. at the mean shape) and ``standardise_input``
#: (per-image contrast normalisation of image inputs; only the MLP has it, see MLPKeypointNet).
ARCHITECTURE_RECIPES = {
    "heatmap": {"lr": 2e-3, "loss": "wing", "standardise_targets": False, "zero_output": False,
                "standardise_input": False},
    "cnn": {"lr": 5e-4, "loss": "l1", "standardise_targets": True, "zero_output": True, "standardise_input": False},
    "mlp": {"lr": 5e-4, "loss": "l1", "standardise_targets": True, "zero_output": True, "standardise_input": True},
    "inception": {"lr": 5e-4, "loss": "l1", "standardise_targets": True, "zero_output": False,
                  "standardise_input": False},
}


def recipe(architecture):
    """The :data:`ARCHITECTURE_RECIPES` entry of ``architecture`` (the heatmap one for unknown names)."""
    return ARCHITECTURE_RECIPES.get(architecture, ARCHITECTURE_RECIPES["heatmap"])


class DecoupledL2Adam(torch.optim.Adam):
    """``torch.optim.Adam`` whose parameter groups may also carry ``l2_decay``.

    A Keras-style penalty ``c * ||w||^2`` added to the loss has the gradient
    ``2c * w``. Put into Adam's gradient (``weight_decay=2c``, what skkp did
    before), it is divided by Adam's running gradient scale like the data
    gradient: at initialisation it was as large as the data gradient of the
    reference network's dense layers, shrank their weights by 38% in 15 steps,
    and, as each of those layers is followed by batch normalisation (which makes
    the weight scale irrelevant to the output), only raised their effective
    step size. Here a group with ``l2_decay = 2c`` has its weights multiplied by
    ``1 - lr * 2c`` before each Adam step, the shrinkage that gradient descent
    on the penalised loss applies at learning rate ``lr`` (decoupled weight
    decay, as in AdamW); the Adam update never sees it. ``weight_decay`` keeps
    its usual coupled meaning.

    Examples
    --------
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = DecoupledL2Adam([{"params": [w], "l2_decay": 0.1}], lr=0.01)
    >>> w.grad = torch.zeros(2)      # no data gradient: only the decay moves w
    >>> _ = opt.step()
    >>> [round(v, 6) for v in w.data.tolist()]   # 1 - lr * l2_decay
    [0.999, 0.999]
    """

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                decay = group.get("l2_decay", 0.0)
                if decay:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.mul_(1.0 - group["lr"] * decay)
        super().step()
        return loss


def l2_param_groups(module, weight_decay=0.0):
    """skorch ``optimizer__param_groups`` for ``module``'s per-layer L2 penalties
    (``module.l2_penalties``, ``{parameter name: c}``): ``l2_decay = 2c`` for
    :class:`DecoupledL2Adam`, with ``weight_decay`` as for every other parameter.

    Examples
    --------
    >>> from skkp.nets import InceptionKeypointNet
    >>> l2_param_groups(InceptionKeypointNet(14, image_size=32))
    [('head.0.weight', {'l2_decay': 0.1, 'weight_decay': 0.0}), ('head.3.weight', {'l2_decay': 0.04, 'weight_decay': 0.0}), ('head.6.weight', {'l2_decay': 0.02, 'weight_decay': 0.0})]
    """
    return [(name, {"l2_decay": 2.0 * coef, "weight_decay": weight_decay})
            for name, coef in getattr(module, "l2_penalties", {}).items()]
