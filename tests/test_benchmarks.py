"""Every benchmark script runs in --smoke mode and writes valid JSON with metadata."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("bench_*.py"))


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


def test_committed_results_have_metadata():
    for path in sorted((BENCH / "results").glob("*.json")):
        result = json.loads(path.read_text())
        meta = result.get("meta") or result.get("metadata")
        assert meta and "commit" in meta and "versions" in meta, path.name
