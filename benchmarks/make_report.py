"""Write docs/benchmarks.md from the committed JSON results (no number is typed by hand).

    python benchmarks/make_report.py
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"


def _load(name):
    path = HERE / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _meta_line(res):
    m = res.get("meta") or res.get("metadata") or {}
    v = m.get("versions", {})
    return (f"*Run {m.get('date', '?')} at commit `{m.get('commit')}` on {m.get('cpu_count')} CPUs "
            f"({m.get('torch_threads')} torch threads), torch {v.get('torch')}, device {m.get('device')}.*")


def _f(x, fmt="{:.2f}"):
    return "n/a" if x is None else fmt.format(x)


def _error_cells(r):
    """MAE, NME and failure-rate cells of a keypoint result row."""
    return (f"{_f(r['mae_px'])} | {_f(100 * r['nme'], '{:.1f}%')} | "
            f"{_f(100 * r['failure_rate_0.10'], '{:.0f}%')}")


def keypoint_section(lines):
    runs = [(p.stem, json.loads(p.read_text())) for p in sorted((HERE / "results").glob("ytf68_keypoints*.json"))]
    if not runs:
        return
    s = runs[0][1]["setup"]
    lines += ["## Real faces: nose keypoints on ytf68", "",
              f"`python benchmarks/bench_ytf68_keypoints.py` — {s['n_train']} training and {s['n_test']} "
              f"held-out crops ({s['crop']}), people split {s['people_train_test'][0]}/"
              f"{s['people_train_test'][1]} ({s['split']}); target {s['target']}. NME is normalised by "
              f"the outer-eye distance (points 36, 45); failure = NME > 0.10. Targets: NME <= 5.0% and "
              f"MAE <= 1.2 px.", "",
              "| model | run | MAE (px @96) | nose NME | failure rate | epochs | training s | torch threads "
              "| predict img/s |", "|---|---|---|---|---|---|---|---|---|"]
    mp = runs[0][1]["mean_predictor"]
    lines.append(f"| mean predictor | | {_error_cells(mp)} | | | | |")
    for stem, res in runs:
        threads = (res.get("meta") or {}).get("torch_threads")
        rows = [(f"`{a}`, stopped at a {res['setup']['budget_cpu_s']:.0f} s budget", r)
                for a, r in res.get("architectures", {}).items()]
        if "defaults" in res:
            rows.append(("`NoseKeypointRegressor(random_state=0)` (the defaults)", res["defaults"]))
        if "full_face_68" in res:
            rows.append(("all 68 points, defaults with `schema='ibug68'` (NME over 68 points)",
                         res["full_face_68"]))
        for name, r in rows:
            lines.append(f"| {name} | `{stem}` | {_error_cells(r)} | {r['epochs']} | "
                         f"{r['fit_seconds']:.0f} | {threads} | {r['predict_images_per_s']:.0f} |")
    lines.append("")
    lines += [f"- `{stem}`: " + _meta_line(res) for stem, res in runs]
    lines.append("")
    var = _load("ytf68_variants")
    if var:
        lines += ["### One change at a time from the defaults (`python benchmarks/bench_ytf68_variants.py`)", "",
                  "| change | MAE (px @96) | nose NME | failure rate | last-epoch train MAE (augmented) "
                  "| last-epoch valid MAE (seen people) | training s |", "|---|---|---|---|---|---|---|"]
        for r in var["variants"]:
            lines.append(f"| `{json.dumps(r['params'])}` | {_error_cells(r)} | {_f(r['train_mae_px_last_epoch'])} | "
                         f"{_f(r['valid_mae_px_last_epoch'])} | {r['fit_seconds']:.0f} |")
        extra = var.get("trained_on_68_points_scored_on_nose")
        if extra:
            lines.append(f"| `{json.dumps(extra['params'])}`, scored on the 9 nose points | {_error_cells(extra)} "
                         f"| | | {extra['fit_seconds']:.0f} |")
        ens = var.get("ensemble_of_2")
        if ens:
            lines.append(f"| mean of the two `random_state` rows above (an ensemble of 2) | {_error_cells(ens)} | | | |")
        lines += ["", var.get("note", ""), "", _meta_line(var), ""]


def parser_section(lines):
    res = _load("parser_ytf68")
    if not res:
        return
    q, t, c, d = res["quality"], res["training"], res["config"], res["data"]
    lines += ["## Face parsing on ytf68 (masks painted from the 68 landmarks)", "",
              f"`python benchmarks/bench_parser_ytf68.py` — {d['n_train']} training / {d['n_test']} held-out "
              f"faces ({d['people_train']}/{d['people_test']} people), {c['image_size']} px, width "
              f"{c['width']}, budget {c['budget_s'] / 60:.0f} min. Target: mean F1 (without background) >= 0.80.",
              "", "| mean F1 | mean IoU | pixel accuracy | finest head alone, mean F1 | prior baseline mean F1 "
              "| epochs | training s | predict img/s |", "|---|---|---|---|---|---|---|---|",
              f"| {q['mean_f1_no_background']:.3f} | {q['mean_iou']:.3f} | {q['pixel_accuracy']:.3f} | "
              f"{q['head_alone_mean_f1'][0]:.3f} | {q['prior_baseline_mean_f1']:.3f} | {t['epochs_done']} | "
              f"{t['train_s']:.0f} | {res['speed']['images_per_s']:.0f} |", ""]
    stages = c.get("head_stages", [2, 3, 4])
    lines += [f"Heads on stages {', '.join(map(str, stages))}; random scale {c['scale_range'][0]}-"
              f"{c['scale_range'][1]}; batch {c['batch_size']}, lr {c['lr']}. Per-class F1:", "",
              "| " + " | ".join(q["per_class_f1"]) + " |", "|" + "---|" * len(q["per_class_f1"]),
              "| " + " | ".join(f"{v:.2f}" for v in q["per_class_f1"].values()) + " |", ""]
    if res.get("note"):
        lines += [res["note"], ""]
    lines += [_meta_line(res), ""]
    ceiling = _load("parser_ceiling")
    if ceiling:
        lines += ["How far 0.80 is, measured without training (`python benchmarks/bench_parser_ceiling.py`, "
                  f"{ceiling['data']['n_faces']} faces): the true maps average-pooled to a head's stride and "
                  "upsampled, and maps painted from landmarks with Gaussian noise.", "",
                  "| case | mean F1 | eyes F1 (l/r) | brows F1 (l/r) |", "|---|---|---|---|"]
        rows = [(f"true maps through stride {k}", v) for k, v in ceiling["stride_ceiling"].items()]
        rows += [(f"landmarks with {v['mean_point_error_px']:.2f} px mean error", v)
                 for v in ceiling["landmark_noise"].values()]
        for name, v in rows:
            f1 = v["per_class_f1"]
            lines.append(f"| {name} | {v['mean_f1']:.3f} | {f1['l_eye']:.2f}/{f1['r_eye']:.2f} | "
                         f"{f1['l_brow']:.2f}/{f1['r_brow']:.2f} |")
        lines += ["", _meta_line(ceiling), ""]


def speed_section(lines):
    res = _load("keypoint_speed")
    if not res:
        return
    s = res["setup"]
    lines += ["## Training and inference speed against a plain PyTorch loop", "",
              f"`python benchmarks/bench_keypoint_speed.py` — {s['n_images']} synthetic noses at "
              f"{s['image_size']}x{s['image_size']}, {s['epochs']} epochs, batch {s['batch_size']}, "
              f"{s['statistic']}, {s['repeats']} repeats.", "",
              "| architecture | skkp fit img/s | plain loop img/s (same layout) | ratio | channels_last speed-up "
              "(plain loop) | skkp predict img/s | plain predict img/s |", "|---|---|---|---|---|---|---|"]
    for arch, r in res["architectures"].items():
        fit = r["fit_images_per_s"]
        plain = fit[f"plain_channels_last={r['skkp_layout_channels_last']}"]
        lines.append(f"| `{arch}` | {fit['skkp']:.0f} | {plain:.0f} | "
                     f"{r['fit_ratio_skkp_vs_plain_same_layout']:.2f} | "
                     f"{_f(r.get('plain_speedup_channels_last'))} | {r['predict_images_per_s']['skkp']:.0f} | "
                     f"{r['predict_images_per_s']['plain']:.0f} |")
    lines += ["", _meta_line(res), ""]


def synthetic_section(lines):
    res = _load("synthetic_noses")
    if not res:
        return
    s = res["setup"]
    lines += ["## Synthetic noses: model against the mean predictor", "",
              f"`python benchmarks/bench_synthetic_noses.py` — `{s['architecture']}`, {s['n_train']} training "
              f"and {s['n_test']} held-out images at {s['image_size']} px, {s['epochs']} epochs.", "",
              "| view | mean predictor MAE (px) | model MAE (px) | improvement | training s |",
              "|---|---|---|---|---|"]
    for view, r in res["views"].items():
        lines.append(f"| {view} | {r['mean_predictor_mae_px']:.2f} | {r['model_mae_px']:.2f} | "
                     f"{r['improvement']:.1f}x | {r['fit_seconds']:.0f} |")
    lines += ["", _meta_line(res), ""]


def json_only_section(lines):
    names = sorted(p.stem for p in (HERE / "results").glob("*.json")
                   if not p.stem.startswith("ytf68_keypoints")
                   and p.stem not in {"keypoint_speed", "synthetic_noses", "parser_ytf68", "parser_ceiling", "ytf68_variants"})
    if names:
        lines += ["## Other results", "", "Mask-edge benchmarks are summarised in "
                  "[MaskEdgeKeypoints](mask_edge_keypoints.md); their JSON files:", ""]
        lines += [f"- `benchmarks/results/{n}.json`" for n in names]
        lines.append("")


def main():
    lines = ["# Benchmarks", "",
             "Generated by `python benchmarks/make_report.py` from `benchmarks/results/*.json`; every script "
             "also has `--smoke` (run by the tests). Timings are medians over repeats on the machine named "
             "under each table; ratios compare against a reference run in the same process.", ""]
    for section in (keypoint_section, speed_section, synthetic_section, parser_section, json_only_section):
        section(lines)
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
