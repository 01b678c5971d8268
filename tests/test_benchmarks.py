"""Every benchmark script runs in --smoke mode and writes valid JSON with metadata."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
#: bench_detection.py has its own smoke test, which also checks its numbers (tests/test_bench_detection.py)
SCRIPTS = sorted(p.name for p in BENCH.glob("bench_*.py") if p.name != "bench_detection.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke(script, tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke", "--json", str(out)], cwd=BENCH,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if not out.exists():  # a real-data benchmark with its data absent says so and writes nothing
        assert "not found" in proc.stdout + proc.stderr
        return
    result = json.loads(out.read_text())
    meta = result.get("meta") or result.get("metadata")
    assert meta and meta["versions"]["torch"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_checks_script_parses_and_refuses_without_a_gpu(tmp_path):
    script = BENCH / "gpu_checks.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = subprocess.run(["bash", str(script)], cwd=BENCH.parent, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "OUT": str(tmp_path)})
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stdout
    assert not any(tmp_path.iterdir())  # nothing ran


def test_committed_results_have_metadata():
    for path in sorted((BENCH / "results").glob("*.json")):
        result = json.loads(path.read_text())
        meta = result.get("meta") or result.get("metadata")
        assert meta and "commit" in meta and "versions" in meta, path.name


def test_ytf68_csv_smoke_subset_keeps_whole_people(tmp_path, monkeypatch):
    """--smoke reads a temporary CSV of the first rows, extended to the end of the last person."""
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import ytf68_csv

    names = ["solo.jpg", "Ann_Lee_1.jpg", "Ann_Lee_2.jpg", "Bo_1.jpg", "Bo_2.jpg", "Bo_3.jpg", "Cy_1.jpg"]
    rows = [["image", "x0", "y0"]] + [[n, str(i), str(2 * i)] for i, n in enumerate(names)]
    with open(tmp_path / "keypoints.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows[:4] + [[]] + rows[4:])  # a blank line is not a row
    with ytf68_csv(tmp_path) as path:
        assert path == tmp_path / "keypoints.csv"
    for n_rows, expected in [(1, 1), (2, 3), (3, 3), (4, 6), (6, 6), (7, 7), (50, 7)]:
        with ytf68_csv(tmp_path, n_rows) as path:
            assert path.parent != tmp_path
            with open(path, newline="") as f:
                got = list(csv.reader(f))
            assert got == rows[:expected + 1], n_rows
        assert not path.exists()  # the temporary copy is removed afterwards


def test_readme_figures_are_generated_from_the_committed_results():
    sys.path.insert(0, str(BENCH))
    try:
        import make_report
    finally:
        sys.path.remove(str(BENCH))
    for path, lines in make_report.generated_blocks():
        block = path.read_text().split(make_report.README_START, 1)[1].split(make_report.README_END, 1)[0]
        assert block.strip().splitlines() == lines(), \
            f"{path.name}'s results differ from benchmarks/results: run python benchmarks/make_report.py"


def test_finetune_benchmark_layout_is_mirror_consistent():
    """The Kaggle 15 points computed from the 68 iBUG points: mirroring the face and then converting
    equals converting and then mirroring with Kaggle's own flip pairs (left/right are not mixed up)."""
    import numpy as np

    from skkp.schemas import IBUG68_SCHEMA, KAGGLE_SCHEMA

    sys.path.insert(0, str(BENCH))
    try:
        from bench_finetune import kaggle15
    finally:
        sys.path.remove(str(BENCH))
    rng = np.random.RandomState(0)
    points = rng.uniform(0, 96, size=(3, 68, 2))

    def mirror(p, schema):
        out = p.copy()
        out[..., 0] = 95 - out[..., 0]
        return out[:, schema.flip_permutation()]

    a = kaggle15(mirror(points, IBUG68_SCHEMA).reshape(3, -1)).reshape(3, 15, 2)
    b = mirror(kaggle15(points.reshape(3, -1)).reshape(3, 15, 2), KAGGLE_SCHEMA)
    np.testing.assert_allclose(a, b)


#: (script, result file, docs page): the page quotes ``script --table result`` between the script's
#: DOCS_START and DOCS_END markers
DOC_TABLES = [("bench_detection", "detection.json", "photos.md"), ("bench_photos", "photos_end_to_end.json", "photos.md"),
              ("bench_video", "video.json", "photos.md"), ("bench_label_floor", "label_floor.json", "keypoints.md")]


@pytest.mark.parametrize("script, result, page", DOC_TABLES)
def test_docs_quote_the_committed_results(script, result, page, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module(script)
    path = BENCH / "results" / result
    assert path.exists(), f"benchmarks/results/{result} is missing: run benchmarks/{script}.py --json {path}"
    text = (BENCH.parent / "docs" / page).read_text()
    block = text.split(bench.DOCS_START, 1)[1].split(bench.DOCS_END, 1)[0]
    assert block.strip().splitlines() == bench.summary_lines(json.loads(path.read_text())), \
        f"docs/{page} differs from benchmarks/results/{result}: paste the output of " \
        f"python benchmarks/{script}.py --table benchmarks/results/{result}"


def test_parser_bench_test_jitter_reframes_the_held_out_faces(ytf68_dir, monkeypatch):
    """--test-jitter cuts the same rows again, moved and scaled, with label maps painted from the moved
    landmarks (what a face detector's boxes do to a parser's input)."""
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    from bench_parser_ytf68 import CLASSES, load_crops

    from skkp.datasets import landmarks_to_masks

    images, masks, groups, points = load_crops(ytf68_dir, 64, 0.25, n_rows=12)
    images_j, masks_j, groups_j, points_j = load_crops(ytf68_dir, 64, 0.25, n_rows=12, jitter=0.1, seed=3)
    assert images_j.shape == images.shape and np.array_equal(groups_j, groups)
    assert np.abs(points_j - points).max() > 1.0  # reframed by pixels, not by rounding
    assert (np.abs(points_j - points).reshape(len(points), -1).max(axis=1) > 0.5).all()  # every face
    np.testing.assert_array_equal(masks_j, landmarks_to_masks(points_j, (64, 64), classes=CLASSES))
    again = load_crops(ytf68_dir, 64, 0.25, n_rows=12, jitter=0.1, seed=3)
    np.testing.assert_array_equal(again[0], images_j)  # seeded: the same framing on every run


def test_collect_parser_scale_pairs_each_scoring_with_its_training_run(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from collect_parser_scale import box_iou_mean, collect

    assert box_iou_mean(0.0) == 1.0
    assert 1.0 > box_iou_mean(0.05) > box_iou_mean(0.1) > box_iou_mean(0.15) > 0.5

    def run(scale, jitter, f1, commit, date):
        q = {"mean_f1_no_background": f1, "mean_iou": 0.5, "flip_average": {"mean_f1_no_background": f1 + 0.01},
             "unique_rows": {"mean_f1_no_background": f1 + 0.05, "n_test": 3}, "per_class_f1": {"nose": f1},
             "prior_baseline_mean_f1": 0.1}
        return {"config": {"scale_range": scale, "test_jitter": jitter}, "quality": q, "data": {"n_test": 5},
                "training": {"train_s": 60.0 if jitter == 0 else 1.0, "epochs_done": 2},
                "metadata": {"commit": commit, "argv": [commit], "date": date, "torch_threads": 1}}

    results = [run([0.9, 1.1], 0.1, 0.5, "s2", "3"), run([0.75, 2.0], 0.0, 0.6, "t1", "1"),
               run([0.9, 1.1], 0.0, 0.7, "t2", "2")]
    out = collect(results, note="n")
    assert [(r["scale_range"], r["test_jitter"]) for r in out["runs"]] == [([0.75, 2.0], 0.0), ([0.9, 1.1], 0.0),
                                                                           ([0.9, 1.1], 0.1)]
    scored = out["runs"][2]
    assert (scored["mean_f1"], scored["scored_at_commit"], scored["trained_at_commit"], scored["train_s"]) == \
        (0.5, "s2", "t2", 60.0)  # the scoring's F1, the training run's commit and time
    assert list(out["setup"]["framing_box_iou_mean"]) == ["0.1"] and out["meta"]["commit"] == "s2"
    with pytest.raises(ValueError, match="no training run"):
        collect(results[:1])
