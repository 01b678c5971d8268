"""Training and inference speed on a GPU: each keypoint architecture and FaceParser at 256 and 448 px.

For every model, with mixed precision on (``amp="auto"``: bf16 on GPUs with native bf16) and off:

- training images/s of ``fit`` against a plain PyTorch loop doing the same work on the same
  device (:func:`_common.plain_train`: same network, layout, data, batch size, optimiser, loss
  and schedule; target skkp >= 0.95x). skkp is timed twice: its epochs (skorch's ``dur``, the
  training loop the plain loop times too) and the whole ``fit`` call (with the input checks,
  resizing and network set-up). With amp on, the plain loop also runs in the other memory
  layout, to check the ``channels_last`` choice;
- inference images/s of ``predict`` (end to end: resizing, standardising, copies back) and of
  the network alone;
- peak GPU memory of ``fit`` and ``predict`` (``torch.cuda.max_memory_allocated``; None off CUDA).

Synthetic data (``make_noses``, ``make_faces``), a warm-up round, then the median of
``--repeats`` rounds (runs interleaved). Sized to finish in under 3 minutes on one H200. Run it on
the GPU machine from the repository root:

    python benchmarks/bench_gpu.py --json benchmarks/results/gpu.json

``--smoke`` runs tiny sizes on whatever device is there (on a CPU, "amp on" means bf16 autocast,
which "auto" leaves off there); its numbers only show that the script works.
"""
import cProfile
import io
import pstats
import time

import numpy as np
import torch

from _common import (metadata, parser, plain_predict, plain_train, set_threads, synchronize, write_results)
from bench_keypoint_speed import network_inputs, plain_loop, skkp_fit
from skkp import FaceParser
from skkp._device import resolve_amp
from skkp._parsing_data import ParsingDataset, to_network_frame
from skkp._training import drop_last_for_batchnorm
from skkp.datasets import make_faces, make_noses
from skkp.keypoints import CHANNELS_LAST_ARCHITECTURES
from skkp.losses import MultiHeadLoss, OhemCrossEntropy
from skkp.parsing import _SGD, WarmupPolyLR, _stages_of_heads
from skkp.resnet import MultiHeadParsingNet
from skkp.schemas import IGNORE_INDEX


def reset_peak(device):
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device):
    """Peak GPU memory allocated since the last :func:`reset_peak`, in MB; None off CUDA."""
    if not str(device).startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def timed(fn, device):
    """``(seconds, result, peak MB)`` of ``fn()``, the device synchronised before the clock stops."""
    reset_peak(device)
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - t0, out, peak_mb(device)


def summarise(times, n_fit, n_predict, peaks, reference, layout):
    """The JSON entry of one model and amp setting from the per-round times (round 0 dropped)."""
    med = {k: float(np.median(v[1:])) for k, v in times.items()}
    fit = {k: n_fit / v for k, v in med.items() if k.startswith(("skkp_fit", "skkp_epochs", "plain_fit"))}
    return {"channels_last": layout,
            "fit_images_per_s": fit,
            "epochs_ratio_skkp_vs_plain": med[reference] / med["skkp_epochs"],
            "fit_ratio_skkp_vs_plain": med[reference] / med["skkp_fit"],
            "predict_images_per_s": {k: n_predict / v for k, v in med.items() if "predict" in k},
            "peak_memory_mb": peaks,
            "seconds_all": times}


def bench_keypoints(arch, args, device, amp_on):
    """Keypoint architecture ``arch``: fit and predict with amp on and off, against the plain loop."""
    size, batch, lr = args.keypoint_size, args.keypoint_batch, 1e-3
    images, y = make_noses(args.n_keypoints, image_size=size, random_state=0)
    X, y_unit = network_inputs(images, y, size)
    layout = arch in CHANNELS_LAST_ARCHITECTURES
    out = {}
    for label, amp in (("amp_on", amp_on), ("amp_off", False)):
        dtype = resolve_amp(amp, device)
        layouts = [layout] + ([not layout] if label == "amp_on" and arch != "mlp" else [])
        times = {"skkp_fit": [], "skkp_epochs": [], "skkp_predict": [], "plain_predict_network": [],
                 **{f"plain_fit_channels_last={cl}": [] for cl in layouts}}
        peaks = {}
        for _ in range(args.repeats + 1):  # round 0 is a warm-up
            t, (_, model), peaks["fit"] = timed(
                lambda: skkp_fit(images, y, arch, size, args.keypoint_epochs, batch, lr, device=device, amp=amp), device)
            times["skkp_fit"].append(t)
            times["skkp_epochs"].append(float(np.sum(model.history_[:, "dur"])))
            t, _, peaks["predict"] = timed(lambda: model.predict(images), device)
            times["skkp_predict"].append(t)
            times["plain_predict_network"].append(plain_predict(model.net_.module_, X, batch, device, dtype))
            for cl in layouts:
                t, _ = plain_loop(X, y_unit, arch, size, args.keypoint_epochs, batch, lr, cl, device=device,
                                  amp_dtype=dtype)
                times[f"plain_fit_channels_last={cl}"].append(t)
        out[label] = {"amp": amp, "autocast_dtype": str(dtype).replace("torch.", "") if dtype else None,
                      **summarise(times, args.n_keypoints * args.keypoint_epochs, args.n_keypoints, peaks,
                                  f"plain_fit_channels_last={layout}", layout)}
    out["amp_speedup"] = _speedups(out)
    return out


def plain_parser_fit(images, labels, size, width, epochs, batch, lr, device, dtype, channels_last, workers,
                     heads="stride4", top_down=True):
    """FaceParser's training done by hand: the same network (same ``heads`` and ``top_down``), OHEM
    loss with FaceParser's boundary term on every head and the sum, SGD with the warm-up/poly schedule stepped per batch, the same dataset and loader
    settings (workers kept for all epochs, as FaceParser keeps them)."""
    torch.manual_seed(0)
    net = MultiHeadParsingNet(n_classes=19, width=width, head_stages=_stages_of_heads(heads),
                              channels_last=channels_last, top_down=top_down).to(device)
    loss = MultiHeadLoss(OhemCrossEntropy(0.7, 1 / 16, IGNORE_INDEX,
                                          boundary_weight=FaceParser().boundary_weight))
    opt = _SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    drop_last = drop_last_for_batchnorm(len(images), batch)
    n_batches = len(images) // batch if drop_last else -(-len(images) // batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, WarmupPolyLR(epochs * n_batches, min(100, epochs * n_batches // 2)))
    loader = torch.utils.data.DataLoader(ParsingDataset(images, labels), batch_size=batch, shuffle=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         pin_memory=str(device).startswith("cuda"), drop_last=drop_last)
    return plain_train(net, loss, opt, loader, epochs, device, dtype, scheduler=schedule)


def bench_parser(size, args, device, amp_on):
    """FaceParser at ``size`` px: fit and predict with amp on and off, against the plain loop."""
    faces, labels = make_faces(args.n_faces, size, random_state=0)
    images, net_labels = to_network_frame(faces, labels, size)
    X = np.stack([ParsingDataset(images)[i][0].numpy() for i in range(len(images))])
    batch, lr, workers = args.parser_batch, 1e-2, args.num_workers
    layout = str(device).startswith("cuda")  # what FaceParser picks
    out = {}
    for label, amp in (("amp_on", amp_on), ("amp_off", False)):
        dtype = resolve_amp(amp, device)
        layouts = [layout] + ([not layout] if label == "amp_on" else [])
        times = {"skkp_fit": [], "skkp_epochs": [], "skkp_predict": [], "plain_predict_network": [],
                 **{f"plain_fit_channels_last={cl}": [] for cl in layouts}}
        peaks = {}
        for _ in range(args.repeats + 1):
            est = FaceParser(image_size=size, width=args.width, max_epochs=args.epochs, batch_size=batch, lr=lr,
                             augment=False, validation_fraction=0.0, num_workers=workers, device=device, amp=amp,
                             random_state=0, heads=args.parser_heads, top_down=args.parser_top_down == "on")
            t, _, peaks["fit"] = timed(lambda: est.fit(faces, labels), device)
            times["skkp_fit"].append(t)
            times["skkp_epochs"].append(float(np.sum(est.history_[:, "dur"])))
            t, _, peaks["predict"] = timed(lambda: est.predict(faces), device)
            times["skkp_predict"].append(t)
            times["plain_predict_network"].append(plain_predict(est.net_.module_, X, batch, device, dtype))
            for cl in layouts:
                times[f"plain_fit_channels_last={cl}"].append(
                    plain_parser_fit(images, net_labels, size, args.width, args.epochs, batch, lr, device, dtype, cl,
                                     workers, heads=args.parser_heads, top_down=args.parser_top_down == "on"))
        out[label] = {"amp": amp, "autocast_dtype": str(dtype).replace("torch.", "") if dtype else None,
                      **summarise(times, args.n_faces * args.epochs, args.n_faces, peaks,
                                  f"plain_fit_channels_last={layout}", layout)}
    out["amp_speedup"] = _speedups(out)
    return out


def _speedups(out):
    on, off = out["amp_on"], out["amp_off"]
    return {"fit": on["fit_images_per_s"]["skkp_fit"] / off["fit_images_per_s"]["skkp_fit"],
            "predict": on["predict_images_per_s"]["skkp_predict"] / off["predict_images_per_s"]["skkp_predict"]}


def main():
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(repeats=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--epochs", type=int, default=2, help="FaceParser's epochs per fit")
    p.add_argument("--keypoint-epochs", type=int, default=3, help="epochs per keypoint fit")
    p.add_argument("--architectures", default="mlp,cnn,inception,heatmap")
    p.add_argument("--n-keypoints", type=int, default=2048, help="training images per keypoint fit")
    p.add_argument("--keypoint-size", type=int, default=96)
    p.add_argument("--keypoint-batch", type=int, default=64)
    p.add_argument("--parser-sizes", default="256,448")
    p.add_argument("--n-faces", type=int, default=128, help="training images per parser fit")
    p.add_argument("--parser-batch", type=int, default=16)
    p.add_argument("--parser-heads", choices=["stride4", "study"], default="stride4",
                   help="FaceParser heads: stride4 (the default, stages 1-4) or study (the reference 2-4)")
    p.add_argument("--parser-top-down", choices=["on", "off"], default="on",
                   help="FaceParser's top_down head at stride 2 (on: the default)")
    p.add_argument("--width", type=float, default=1.0, help="FaceParser channel multiplier")
    p.add_argument("--num-workers", type=int, default=4, help="FaceParser's DataLoader workers (and the plain loop's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; 1 with --smoke)")
    p.add_argument("--profile", default=None, metavar="TXT",
                   help="also write cProfile's top functions of one skkp fit (cnn, amp on) to this file")
    args = p.parse_args()
    if args.smoke:
        args.repeats, args.epochs, args.n_keypoints, args.keypoint_size, args.keypoint_batch = 1, 1, 16, 32, 8
        args.keypoint_epochs = 1
        args.parser_sizes, args.n_faces, args.parser_batch, args.width, args.num_workers = "32,48", 8, 4, 0.125, 0
    set_threads(args)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (run with --device cpu, e.g. with --smoke)")
    # amp "on": what "auto" picks on this device; on a CPU "auto" is off, so bf16 is asked for
    amp_on = "auto" if resolve_amp("auto", device) is not None else "bf16"
    start = time.perf_counter()
    results = {"benchmark": "gpu", "meta": metadata(device),
               "setup": {"device": device, "smoke": args.smoke, "epochs": args.epochs,
                         "keypoint_epochs": args.keypoint_epochs, "repeats": args.repeats,
                         "statistic": "median over repeats after one warm-up round (runs interleaved)",
                         "amp_on": amp_on, "amp_on_dtype": str(resolve_amp(amp_on, device)).replace("torch.", ""),
                         "keypoints": {"n_images": args.n_keypoints, "image_size": args.keypoint_size,
                                       "batch_size": args.keypoint_batch, "augment": False},
                         "parser": {"n_images": args.n_faces, "width": args.width, "batch_size": args.parser_batch,
                                    "heads": args.parser_heads,
                                    "head_stages": list(_stages_of_heads(args.parser_heads)),
                                    "top_down": args.parser_top_down == "on",
                                    "num_workers": args.num_workers, "augment": False},
                         "plain_loop": "benchmarks/_common.py plain_train: no read-back per batch; the keypoint "
                                       "loop does the default fit's work (recipe loss, decoupled L2 groups, the MLP's "
                                       "input standardisation). skkp reads the batch losses back once per epoch on "
                                       "a GPU (skkp._device.DeferredLossMixin)"},
               "keypoints": {}, "parser": {}}
    if device.startswith("cuda"):
        results["meta"].update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    for arch in args.architectures.split(","):
        results["keypoints"][arch] = res = bench_keypoints(arch, args, device, amp_on)
        print(arch, _line(res), f"({time.perf_counter() - start:.0f} s)", flush=True)
    for size in (int(s) for s in args.parser_sizes.split(",")):
        results["parser"][str(size)] = res = bench_parser(size, args, device, amp_on)
        print(f"parser {size}px", _line(res), f"({time.perf_counter() - start:.0f} s)", flush=True)
    entries = [entry[label] for group in ("keypoints", "parser") for entry in results[group].values()
               for label in ("amp_on", "amp_off")]
    epochs_ratio = min(e["epochs_ratio_skkp_vs_plain"] for e in entries)
    results["summary"] = {"min_epochs_ratio_skkp_vs_plain": epochs_ratio,
                          "min_fit_ratio_skkp_vs_plain": min(e["fit_ratio_skkp_vs_plain"] for e in entries),
                          "target_ratio": 0.95, "target_met_by_epochs": epochs_ratio >= 0.95}
    results["wall_s"] = time.perf_counter() - start
    if args.profile:
        profile_fit(args, device, amp_on, args.profile)
    write_results(results, args.json)


def profile_fit(args, device, amp, path):
    """cProfile's 40 most expensive functions (cumulative) of one warm skkp fit of the cnn, to ``path``."""
    size = args.keypoint_size
    images, y = make_noses(args.n_keypoints, image_size=size, random_state=0)
    skkp_fit(images, y, "cnn", size, 1, args.keypoint_batch, 1e-3, device=device, amp=amp)  # warm
    prof = cProfile.Profile()
    prof.enable()
    skkp_fit(images, y, "cnn", size, args.keypoint_epochs, args.keypoint_batch, 1e-3, device=device, amp=amp)
    synchronize(device)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
    with open(path, "w") as f:
        f.write(text.getvalue())


def _line(res):
    on, off = res["amp_on"], res["amp_off"]
    return (f"train img/s amp on {on['fit_images_per_s']['skkp_epochs']:.0f} (x{on['epochs_ratio_skkp_vs_plain']:.2f} of "
            f"plain, whole fit x{on['fit_ratio_skkp_vs_plain']:.2f}), off {off['fit_images_per_s']['skkp_epochs']:.0f} "
            f"(x{off['epochs_ratio_skkp_vs_plain']:.2f}, x{off['fit_ratio_skkp_vs_plain']:.2f}); predict img/s "
            f"on {on['predict_images_per_s']['skkp_predict']:.0f}, off {off['predict_images_per_s']['skkp_predict']:.0f}"
            f"; peak fit MB on {on['peak_memory_mb']['fit']}, off {off['peak_memory_mb']['fit']}")


if __name__ == "__main__":
    main()
