"""Training and inference speed of NoseKeypointRegressor against a plain PyTorch loop.

For each architecture, the same network, data, batch size, optimiser and loss
are trained once through skkp (``fit``) and once through a hand-written
PyTorch loop in the same process; the ratio of images/s is reported (target:
skkp >= 0.95x). The plain loop is also timed in both memory layouts
(default and ``channels_last``) to justify the layout skkp picks.

    python benchmarks/bench_keypoint_speed.py --json benchmarks/results/keypoint_speed.json
"""
import time

import numpy as np
import torch

from _common import add_threads_option, metadata, parser, plain_predict, plain_train, set_threads, write_results
from skkp import NoseKeypointRegressor
from skkp.datasets import make_noses
from skkp._recipes import DecoupledL2Adam, l2_param_groups, recipe
from skkp.losses import MaskedKeypointLoss
from skkp.nets import build_keypoint_net


def network_inputs(images, y, size):
    """The network-ready arrays skkp computes inside fit (standardised images, [-1, 1] targets), for
    the plain loop."""
    X = ((images / 255.0 - (images / 255.0).mean()) / (images / 255.0).std()).astype(np.float32)[:, None]
    return X, ((y + 0.5) * (2.0 / size) - 1.0).astype(np.float32)


def plain_loop(X, y, architecture, image_size, epochs, batch_size, lr, channels_last, seed=0, device="cpu",
               amp_dtype=None):
    """Train the network with a minimal PyTorch loop (:func:`_common.plain_train`) on ``device``;
    returns seconds of training and the network. The work is the default ``fit``'s: the
    architecture's recipe loss (Wing for ``heatmap``, L1 for the others), the MLP's per-image
    input standardisation, and Adam with the network's decoupled per-layer L2 groups."""
    torch.manual_seed(seed)
    rec = recipe(architecture)
    extra = {"standardise_input": rec["standardise_input"]} if architecture == "mlp" else {}
    net = build_keypoint_net(architecture, y.shape[1], image_size, n_features=image_size ** 2,
                             channels_last=channels_last, **extra).to(device)
    params, decayed = dict(net.named_parameters()), dict(l2_param_groups(net))
    opt = DecoupledL2Adam([{"params": [p for n, p in params.items() if n not in decayed]}]
                          + [{"params": [params[n]], **opts} for n, opts in decayed.items()], lr=lr)
    loss = MaskedKeypointLoss(kind=rec["loss"], px_per_unit=image_size / 2 if rec["loss"] == "wing" else None)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
                                         batch_size=batch_size, shuffle=True,
                                         pin_memory=str(device).startswith("cuda"))
    return plain_train(net, loss.to(device), opt, loader, epochs, device, amp_dtype), net


def skkp_fit(images, y, architecture, image_size, epochs, batch_size, lr, device="cpu", **params):
    """``NoseKeypointRegressor.fit`` doing the plain loop's work (no validation, no augmentation);
    returns seconds and the model."""
    model = NoseKeypointRegressor(architecture=architecture, image_size=image_size, max_epochs=epochs,
                                  batch_size=batch_size, lr=lr, validation_fraction=0.0, augment=False,
                                  random_state=0, device=device, **params)
    t0 = time.perf_counter()
    model.fit(images, y)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, model


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=512, help="training images")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--architectures", default="mlp,cnn,heatmap,inception")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args)
    size, batch, lr = 96, 64, 1e-3
    if args.smoke:
        args.n, args.epochs, args.repeats, size = 64, 1, 1, 32
    images, y = make_noses(args.n, image_size=size, random_state=0)
    X, y_unit = network_inputs(images, y, size)
    results = {"benchmark": "keypoint_speed", "meta": metadata(),
               "setup": {"n_images": args.n, "image_size": size, "epochs": args.epochs, "batch_size": batch,
                         "repeats": args.repeats, "statistic": "median over repeats (runs interleaved)"},
               "architectures": {}}
    for arch in args.architectures.split(","):
        layouts = [False] if arch == "mlp" else [False, True]
        times = {"skkp": [], **{f"plain_channels_last={cl}": [] for cl in layouts}}
        pred = {"skkp": [], "plain": []}
        for _ in range(args.repeats + 1):  # the first round is a warm-up and is dropped
            t, model = skkp_fit(images, y, arch, size, args.epochs, batch, lr)
            times["skkp"].append(t)
            pred["skkp"].append(_timed(lambda: model.predict(images)))
            for cl in layouts:
                t, net = plain_loop(X, y_unit, arch, size, args.epochs, batch, lr, cl)
                times[f"plain_channels_last={cl}"].append(t)
            pred["plain"].append(plain_predict(model.net_.module_, X, batch))
        med = {k: float(np.median(v[1:])) for k, v in times.items()}
        layout = model.net_.module_.channels_last if hasattr(model.net_.module_, "channels_last") else False
        ref = med[f"plain_channels_last={layout}"]
        n_img = args.n * args.epochs
        res = {"skkp_layout_channels_last": layout,
               "fit_images_per_s": {k: n_img / v for k, v in med.items()},
               "fit_ratio_skkp_vs_plain_same_layout": ref / med["skkp"],
               "fit_ratio_skkp_vs_best_plain": min(v for k, v in med.items() if k != "skkp") / med["skkp"],
               "predict_images_per_s": {k: args.n / float(np.median(v[1:])) for k, v in pred.items()},
               "fit_seconds_all": times}
        if len(layouts) == 2:
            res["plain_speedup_channels_last"] = med["plain_channels_last=False"] / med["plain_channels_last=True"]
        results["architectures"][arch] = res
        print(arch, {k: res[k] for k in ("fit_images_per_s", "fit_ratio_skkp_vs_plain_same_layout",
                                         "predict_images_per_s")}, flush=True)
    write_results(results, args.json)


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
