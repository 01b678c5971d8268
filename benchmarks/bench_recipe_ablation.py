"""One suspect at a time: a plain PyTorch loop over skkp's direct-regression networks and augmentation.

The diagnosis of issue #12 (docs/keypoints.md, "What was wrong with the
direct-regression networks"): the loop trains ``skkp.nets`` networks on
``skkp._keypoint_data.KeypointDataset`` (the estimator's augmentation) with Adam,
a cosine schedule per step and a masked-free L1 or MSE loss, and each part of the
old recipe is a switch: targets in [-1, 1] units or standardised per coordinate,
the learning rate, the loss, the Keras L2 penalties as coupled Adam weight decay
(the old conversion), decoupled decay or none, a zero output layer, batch
normalisation in inception's dense head, augmentation. It prints one JSON line:
held-out MAE in pixels (of 96 px crops for ytf68) after each epoch, against the
mean predictor's, and the norms of the penalised layers before and after.

    python benchmarks/bench_recipe_ablation.py --architecture cnn --targets unit    # the old recipe
    python benchmarks/bench_recipe_ablation.py --architecture cnn --targets std
    python benchmarks/bench_recipe_ablation.py --architecture inception --targets std --l2 none
    python benchmarks/bench_recipe_ablation.py --data ytf68 --size 48 --architecture cnn --targets std
"""
import math
import time

import numpy as np
import torch
from torch import nn

from _common import YTF68_DIR, metadata, parser, write_results
from skkp._frames import from_unit, rescale_points, to_unit
from skkp._keypoint_data import AUGMENT_DEFAULTS, KeypointDataset
from skkp._recipes import DecoupledL2Adam
from skkp.augment import resize_stack
from skkp.datasets import make_noses
from skkp.nets import build_keypoint_net


def load(args, size):
    """``(X_train, y_train, X_test, y_test, px)``: uint8-scale images, pixel targets, and the
    factor from pixels of ``size`` to the reported pixels."""
    if args.data == "noses":
        X, y = make_noses(args.n_train, view=args.view, image_size=size, random_state=1)
        X_te, y_te = make_noses(args.n_test, view=args.view, image_size=size, random_state=2)
        return X, y, X_te, y_te, 1.0
    from bench_ytf68_keypoints import load_split, nose_columns

    crops, _ = load_split(YTF68_DIR, n_rows=200 if args.smoke else None)
    (X, y), (X_te, y_te) = crops["train"], crops["test"]
    cols = nose_columns()
    y, y_te = y[:, cols], y_te[:, cols]
    if size != 96:
        X, X_te = (resize_stack(a.astype(np.float32), size) for a in (X, X_te))
        y, y_te = rescale_points(y, (96, 96), (size, size)), rescale_points(y_te, (96, 96), (size, size))
    return X, y, X_te, y_te, 96 / size


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--architecture", default="cnn", choices=["cnn", "inception", "mlp"])
    p.add_argument("--data", default="noses", choices=["noses", "ytf68"])
    p.add_argument("--view", default="frontal")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--n-train", type=int, default=600)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--targets", default="unit", choices=["unit", "std"],
                   help="unit: [-1, 1] of the image (the old recipe); std: standardised per coordinate")
    p.add_argument("--loss", default="l1", choices=["l1", "mse"])
    p.add_argument("--l2", default="coupled", choices=["coupled", "decoupled", "none"],
                   help="inception's Keras penalties c: Adam weight_decay 2c (the old recipe), decoupled 2c, or none")
    p.add_argument("--zero-output", action="store_true", help="start the output layer at zero")
    p.add_argument("--no-head-bn", action="store_true", help="inception without BatchNorm in its dense head")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    size = args.size
    if args.smoke:
        args.n_train, args.n_test, args.epochs, size = 64, 32, 1, 32
    X, y, X_te, y_te, px = load(args, size)
    mean_mae = float(np.abs(y_te - y.mean(axis=0)).mean()) * px
    x_mean, x_std = X.mean() / 255, X.std() / 255

    def prep(images):
        return ((images[:, None].astype(np.float32) / 255 - x_mean) / x_std).astype(np.float32)

    units = to_unit(y, size).astype(np.float32)
    if args.targets == "std":
        offset, scale = units.mean(axis=0), units.std(axis=0)
    else:
        offset, scale = np.zeros(units.shape[1], np.float32), np.ones(units.shape[1], np.float32)
    offset_t, scale_t = torch.tensor(offset), torch.tensor(scale)
    ds = KeypointDataset(prep(X), units, None if args.no_augment else dict(AUGMENT_DEFAULTS), (), seed=args.seed)
    torch.manual_seed(args.seed)
    net = build_keypoint_net(args.architecture, units.shape[1], image_size=size)
    if args.no_head_bn and args.architecture == "inception":
        for i, m in enumerate(net.head):
            if isinstance(m, nn.BatchNorm1d):
                net.head[i] = nn.Identity()
    if args.zero_output:
        out = net.get_submodule(net.output_layer)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
    penalties = getattr(net, "l2_penalties", {})
    named = dict(net.named_parameters())
    norms_before = {n: float(named[n].detach().norm()) for n in penalties}
    groups = [{"params": [q for n, q in named.items() if n not in penalties], "weight_decay": 0.0}]
    for n, c in penalties.items():
        key = {"coupled": "weight_decay", "decoupled": "l2_decay"}.get(args.l2)
        groups.append({"params": [named[n]], **({key: 2 * c} if key else {})})
    opt = DecoupledL2Adam(groups, lr=args.lr)
    total = math.ceil(len(ds) / args.batch_size) * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, total))))
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed),
                                         drop_last=len(ds) % args.batch_size == 1)

    def predict():
        net.eval()
        with torch.no_grad():
            inputs = prep(X_te)
            o = torch.cat([net(torch.from_numpy(inputs[i:i + 128])) for i in range(0, len(inputs), 128)])
        net.train()
        return from_unit((o * scale_t + offset_t).numpy().astype(np.float64), size)

    t0, curve = time.process_time(), []
    for epoch in range(args.epochs):
        ds.epoch = epoch
        for xb, yb in loader:
            d = net(xb) - (yb - offset_t) / scale_t
            loss = d.abs().mean() if args.loss == "l1" else (d * d).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        curve.append(round(float(np.abs(predict() - y_te).mean()) * px, 2))
    config = {k: v for k, v in vars(args).items() if k not in ("json", "repeats", "smoke")}
    result = {"benchmark": "recipe_ablation", "meta": metadata(), "config": config, "image_size": size,
              "mean_predictor_mae_px": round(mean_mae, 2), "mae_px": curve[-1],
              "improvement": round(mean_mae / curve[-1], 2), "mae_px_by_epoch": curve,
              "cpu_seconds": round(time.process_time() - t0),
              "penalised_weight_norms": {n: [round(norms_before[n], 3), round(float(named[n].detach().norm()), 3)]
                                         for n in penalties}}
    write_results(result, args.json)


if __name__ == "__main__":
    main()
