"""Inference speed of the default keypoint network: torch eager against onnxruntime fp32 and int8.

The network is the shipped ``ibug68_nose`` model (``NoseKeypointRegressor()``'s
architecture, "heatmap" at 96 px, real weights), exported with
``skkp.onnx.export``; int8 is onnxruntime's static QDQ quantisation
(``quantize_static``, per-channel int8 weights, uint8 activations) calibrated on
100 face crops. Timed, each as the median over repeats after a warm-up, all in
this process: per-face latency at batch 1 and faces/s at batch 64, for the
estimator's ``predict``, the bare torch module, and the onnxruntime predictor
(``skkp.onnx.load(...).predict``) and bare session, fp32 and int8. Also: the
network's FLOPs per face (Conv2d/Linear multiply-adds x 2), the GFLOP/s achieved
at batch 64 against an assumed fp32 peak, and the accuracy int8 costs on ytf68
(../shared/data/ytf68, when present). Targets of the issue: <= 1 ms per face at
batch 1, >= 0.5x of the peak at batch 64.

    python benchmarks/bench_onnx.py --threads 2 --json benchmarks/results/onnx.json
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import YTF68_DIR, add_threads_option, metadata, parser, set_threads, write_results

#: The assumed fp32 peak: 2 cores x 2.3 GHz x 2 AVX-512 FMA units x 16 float32 lanes x 2 FLOP per FMA.
PEAK = {"cores": 2, "ghz": 2.3, "flop_per_cycle_per_core": 64}
PEAK["gflops"] = PEAK["cores"] * PEAK["ghz"] * PEAK["flop_per_cycle_per_core"]


def gemm_gflops(threads, n=2048, repeats=5):
    """The fp32 GFLOP/s torch's matrix product reaches on ``threads`` threads (median of ``repeats``
    n x n products after a warm-up): the ceiling this machine delivers in practice, beside the
    assumed peak (the two differ when the core's FMA units are narrower than assumed, or the clock
    is not 2.3 GHz)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, generator=torch.Generator().manual_seed(0)), torch.randn(n, n)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2 * n ** 3 / float(np.median(times)) / 1e9


def cpu_ids():
    """Vendor, family and model numbers of the first CPU (/proc/cpuinfo) and whether it has AVX-512;
    empty where /proc/cpuinfo is absent. The model name may be generic in a VM ("AMD EPYC"), the numbers
    say which core it is (family 25 model 17: Zen 4, whose AVX-512 runs on 256-bit FMA pipes)."""
    out = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("vendor_id", "cpu family", "model") and key not in out:
                out[key] = value
            elif key == "flags" and "avx512f" not in out:
                out["avx512f"] = "avx512f" in value.split()
    except OSError:
        pass
    return out


def cpu_model():
    """The ``Model name`` line of ``lscpu`` (or /proc/cpuinfo), or None."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def count_flops(module, image_size):
    """FLOPs of one forward pass on one image: 2 x the multiply-adds of every Conv2d and Linear
    (BatchNorm, ReLU, resizes and the soft-argmax are not counted; they are a few percent)."""
    import torch

    macs = []

    def conv_hook(m, inputs, out):
        macs.append(out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])

    def linear_hook(m, inputs, out):
        macs.append(out.numel() * m.in_features)

    hooks = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 1, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return 2 * int(sum(macs))


def network_inputs(images, size):
    """What the ONNX graph takes: gray images on the 0-1 scale resized to ``size`` (as predict makes them)."""
    from skkp._validation import check_images
    from skkp.augment import resize_stack

    return np.ascontiguousarray(resize_stack(check_images(images).data[:, 0], size)[:, None])


def quantize_int8(fp32_path, int8_path, calibration, input_name="image"):
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on ``calibration`` inputs.

    The heatmap convolution and the soft-argmax after it stay float: quantising the heatmap
    logits before the spatial softmax cost 0.4 px on ytf68, the rest of the network 0.03 px."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, data, batch=10):
            self._batches = iter([{input_name: data[i:i + batch]} for i in range(0, len(data), batch)])

        def get_next(self):
            return next(self._batches, None)

    pre = Path(int8_path).with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre))
    nodes = list(onnx.load(str(pre)).graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    keep_float = [n.name for n in nodes[convs[-1]:]]  # the last conv (heatmaps) and the soft-argmax
    quantize_static(str(pre), str(int8_path), Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep_float)
    return {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor, MinMax calibration",
            "n_calibration": int(len(calibration)), "kept_float": f"the last Conv and the {len(keep_float) - 1} "
                                                                   "soft-argmax nodes after it"}


def timed(fn, repeats, inner):
    """Median seconds of one call of ``fn``: a warm-up, then ``repeats`` timings of ``inner`` calls each."""
    for _ in range(max(1, inner // 4)):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def load_faces(smoke, image_size, n_calib):
    """(calibration images, test images, test nose truth or None, description)."""
    from skkp.datasets import make_noses

    if not smoke and (YTF68_DIR / "keypoints.csv").is_file():
        from sklearn.model_selection import GroupShuffleSplit

        from skkp.datasets import IBUG68_NOSE, crop_faces, load_landmarks_csv

        data = load_landmarks_csv(YTF68_DIR / "keypoints.csv", YTF68_DIR / "images", gray=True)
        train, test = next(GroupShuffleSplit(1, test_size=0.2, random_state=0)
                           .split(data.keypoints, groups=data.groups))
        calib = np.random.RandomState(0).choice(train, n_calib, replace=False)
        cal = crop_faces([data.images[i] for i in calib], size=96, margin=0.25, gray=True,
                         keypoints=data.keypoints[calib])
        te = crop_faces([data.images[i] for i in test], keypoints=data.keypoints[test], size=96, margin=0.25,
                        gray=True)
        cols = np.ravel([[2 * i, 2 * i + 1] for i in IBUG68_NOSE])
        groups = np.asarray(data.groups)
        return cal.images, te.images, te.keypoints[:, cols], {
            "data": "ytf68", "crops": "crop_faces(size=96, margin=0.25, gray=True), no jitter",
            "split": "GroupShuffleSplit by person, test_size=0.2, random_state=0 (as bench_ytf68_keypoints)",
            "n_calibration_from_train_people": int(n_calib), "n_test": int(len(test)),
            "people_train_test": [len(set(groups[train])), len(set(groups[test]))],
            "truth": "the 9 iBUG nose points 27-35",
            "note": "the shipped ibug68_nose model was trained on all 313 people, so the test people are not "
                    "held out from it: its error against the truth is a training-set figure; int8 vs fp32 "
                    "is the cost of quantisation"}
    X, y = make_noses(n_calib + 64, image_size=image_size, random_state=0)
    return X[:n_calib], X[n_calib:], None, {"data": f"make_noses({n_calib + 64}, image_size={image_size})",
                                            "n_calibration": int(n_calib), "n_test": 64}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="batch size of the throughput measurement")
    p.add_argument("--n-calib", type=int, default=100, help="calibration crops for int8")
    add_threads_option(p)
    args = p.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        print('onnxruntime not found: pip install "skkp[onnx]"; nothing to do.')
        return
    set_threads(args)
    import torch

    import skkp.onnx
    from skkp.metrics import mean_absolute_error_px

    load_before = os.getloadavg()
    if args.smoke:
        from skkp import NoseKeypointRegressor
        from skkp.datasets import make_noses

        args.repeats, args.n_calib, args.batch = 1, 20, 8
        X, y = make_noses(32, image_size=32, random_state=0)
        model = NoseKeypointRegressor(image_size=32, max_epochs=1, random_state=0, device="cpu").fit(X, y)
        network = "tiny heatmap NoseKeypointRegressor(image_size=32, max_epochs=1) (smoke)"
    else:
        from skkp.pretrained import load_model

        model = load_model("ibug68_nose", device="cpu")
        network = "skkp.pretrained.load_model('ibug68_nose'): NoseKeypointRegressor() architecture, real weights"
    size = model.frame_.image_size
    threads = torch.get_num_threads()
    cal_images, test_images, truth, data_info = load_faces(args.smoke, size, args.n_calib)
    inner1 = 3 if args.smoke else 200
    inner64 = 1 if args.smoke else 5

    with tempfile.TemporaryDirectory(prefix="skkp-bench-onnx-") as tmp:
        t0 = time.perf_counter()
        fp32_path = skkp.onnx.export(model, Path(tmp) / "nose.onnx")
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        quant = quantize_int8(fp32_path, Path(tmp) / "nose_int8.onnx", network_inputs(cal_images, size))
        quant["seconds"] = time.perf_counter() - t0
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        predictors = {name: skkp.onnx.OnnxKeypointModel(ort.InferenceSession(str(path), options,
                                                                             providers=["CPUExecutionProvider"]))
                      for name, path in (("fp32", fp32_path), ("int8", Path(tmp) / "nose_int8.onnx"))}
        sizes = {"fp32": fp32_path.stat().st_size, "int8": (Path(tmp) / "nose_int8.onnx").stat().st_size}

    module = model.net_.module_.eval()
    flops = count_flops(module, size)
    batches = {1: test_images[:1], args.batch: test_images[:args.batch]}
    if len(batches[args.batch]) < args.batch:
        reps = -(-args.batch // len(test_images))
        batches[args.batch] = np.concatenate([test_images] * reps)[:args.batch]

    def torch_forward(x):
        with torch.inference_mode():
            return module(x)

    timings = {}
    for batch, images in batches.items():
        net_in = network_inputs(images, size)
        std_in = torch.from_numpy(((net_in - model.frame_.x_mean) / model.frame_.x_std).astype(np.float32))
        inner = inner1 if batch == 1 else inner64
        runs = {
            "torch_estimator_predict": lambda: model.predict(images),
            "torch_module_forward": lambda: torch_forward(std_in),
            "onnxruntime_fp32_predict": lambda: predictors["fp32"].predict(images),
            "onnxruntime_fp32_session": lambda: predictors["fp32"].session.run(None, {"image": net_in}),
            "onnxruntime_int8_predict": lambda: predictors["int8"].predict(images),
            "onnxruntime_int8_session": lambda: predictors["int8"].session.run(None, {"image": net_in}),
        }
        res = {}
        for name, fn in runs.items():
            t = timed(fn, args.repeats, inner)
            res[name] = {"ms_per_face": 1e3 * t["median_s"] / batch, "faces_per_s": batch / t["median_s"],
                         "gflops_per_s": flops * batch / t["median_s"] / 1e9,
                         "spread_ms_per_face": [1e3 * t["min_s"] / batch, 1e3 * t["max_s"] / batch]}
            print(f"batch {batch:3d} {name:28s} {res[name]['ms_per_face']:8.3f} ms/face "
                  f"{res[name]['faces_per_s']:9.1f} faces/s {res[name]['gflops_per_s']:7.1f} GFLOP/s", flush=True)
        timings[f"batch_{batch}"] = res

    b1, bN = timings["batch_1"], timings[f"batch_{args.batch}"]
    ratios = {}
    for b, res in (("batch_1", b1), (f"batch_{args.batch}", bN)):
        for prec in ("fp32", "int8"):
            ratios[f"{b}_speedup_onnxruntime_{prec}_predict_vs_torch_predict"] = (
                res["torch_estimator_predict"]["ms_per_face"] / res[f"onnxruntime_{prec}_predict"]["ms_per_face"])
            ratios[f"{b}_speedup_onnxruntime_{prec}_session_vs_torch_module"] = (
                res["torch_module_forward"]["ms_per_face"] / res[f"onnxruntime_{prec}_session"]["ms_per_face"])

    pred = {"torch": model.predict(test_images), "fp32": predictors["fp32"].predict(test_images),
            "int8": predictors["int8"].predict(test_images)}
    accuracy = {"onnx_fp32_vs_torch_max_abs_px": float(np.abs(pred["fp32"] - pred["torch"]).max()),
                "int8_vs_fp32_mae_px": float(np.abs(pred["int8"] - pred["fp32"]).mean()),
                "int8_vs_fp32_max_abs_px": float(np.abs(pred["int8"] - pred["fp32"]).max())}
    if truth is not None:
        for name in ("torch", "fp32", "int8"):
            accuracy[f"{name}_mae_px_vs_truth"] = float(mean_absolute_error_px(truth, pred[name]))
        accuracy["int8_cost_mae_px_vs_truth"] = accuracy["int8_mae_px_vs_truth"] - accuracy["fp32_mae_px_vs_truth"]

    gemm = gemm_gflops(threads, n=512 if args.smoke else 2048, repeats=1 if args.smoke else args.repeats)
    best_b1 = min(("onnxruntime_fp32_predict", "onnxruntime_int8_predict"), key=lambda k: b1[k]["ms_per_face"])
    best_fp32_gflops = max(bN[k]["gflops_per_s"] for k in ("torch_module_forward", "onnxruntime_fp32_session"))
    results = {
        "benchmark": "onnx",
        "meta": {**metadata(), "cpu_model": cpu_model(), "cpu_ids": cpu_ids(), "onnxruntime_threads": threads,
                 "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
                 "versions_onnx": {"onnxruntime": ort.__version__, "onnx": __import__("onnx").__version__}},
        "setup": {"network": network, "architecture": model.architecture, "image_size": size,
                  "batch_sizes": [1, args.batch], "repeats": args.repeats,
                  "calls_per_repeat": {"batch_1": inner1, f"batch_{args.batch}": inner64},
                  "statistic": "median over repeats after a warm-up; ms per face = call time / batch",
                  "threads": threads, "exporter": predictors["fp32"].metadata["exporter"],
                  "opset": predictors["fp32"].metadata["opset"], "export_s": export_s,
                  "file_bytes": sizes, "quantisation": quant, **data_info},
        "flops": {"per_face": flops, "gflop_per_face": flops / 1e9,
                  "counted": "2 x multiply-adds of every Conv2d and Linear (hooks on one forward)"},
        "peak_assumption": {**PEAK, "note": "assumed fp32 peak of the machine (2 AVX-512 cores at 2.3 GHz, 2 FMA "
                                            "units of 16 float32 each); int8 rows count the same FLOPs"},
        "timings": timings,
        "ratios": ratios,
        "accuracy": accuracy,
        "targets": {
            "latency_ms_per_face_batch_1": {"target": 1.0, "best_onnxruntime_predict": best_b1,
                                            "value": b1[best_b1]["ms_per_face"],
                                            "met": b1[best_b1]["ms_per_face"] <= 1.0},
            f"batch_{args.batch}_fraction_of_peak": {
                "target": 0.5, "value": best_fp32_gflops / PEAK["gflops"],
                "of": "best fp32 GFLOP/s (torch module or onnxruntime session) / assumed peak",
                "int8_value": bN["onnxruntime_int8_session"]["gflops_per_s"] / PEAK["gflops"],
                "met": best_fp32_gflops / PEAK["gflops"] >= 0.5,
                "measured_gemm_gflops": gemm,
                "value_of_measured_gemm": best_fp32_gflops / gemm,
                "gemm": "torch.mm of 2048 x 2048 float32 matrices on the same threads, median of the repeats"},
        },
    }
    print({k: round(v, 3) for k, v in accuracy.items()}, flush=True)
    write_results(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
