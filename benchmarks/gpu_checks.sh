#!/usr/bin/env bash
# The GPU checks of issue 12 in one run on one CUDA GPU (sized for about 9 minutes on an H200):
#   1. benchmarks/bench_gpu.py alone on the GPU (speed against a plain PyTorch loop, AMP, memory),
#      with a cProfile of one skkp fit;
#   2. then side by side: the study's 500-epoch `inception` on ytf68, FaceParser on ytf68 at a
#      256 px input (the crops and the scoring of the 128 px CPU runs; trained without the images ytf68
#      labels twice, the best CPU protocol), and the CUDA tests.
# The runs of step 2 share the GPU and the CPU cores: their times are not speed measurements.
#
#   OUT=/tmp/gpu SKKP_YTF68=/path/to/ytf68 bash benchmarks/gpu_checks.sh
#
# Wheels in .whl/ (e.g. skorch, where the machine lacks it) are installed to /tmp/site first.
# Every result and log goes to $OUT (at most 8 files). To run it on a lent machine whose copy of the
# repository has no ../shared beside it: `cp -r ../shared/data/ytf68 .ytf68` (32 MB) and
# `pip download --no-deps skorch==1.4.0 -d .whl`, both kept out of git (.git/info/exclude), and send
# both folders with the working tree.
set -u
if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_checks.sh needs a CUDA GPU; on a CPU run: python benchmarks/bench_gpu.py --smoke --device cpu"
    exit 2
fi
OUT=${OUT:-/tmp/skkp-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export SKKP_YTF68=${SKKP_YTF68:-$PWD/.ytf68}
nvidia-smi -L
start=$SECONDS
timeout 210 python3 benchmarks/bench_gpu.py --device cuda --json "$OUT/gpu.json" --profile "$OUT/profile.txt" \
    > "$OUT/bench_gpu.log" 2>&1
echo "bench_gpu: rc $? at $((SECONDS - start)) s"; tail -n 8 "$OUT/bench_gpu.log"
timeout 350 python3 benchmarks/bench_ytf68_keypoints.py --architectures inception --epochs inception=500 \
    --budget 300 --clock wall --device cuda --num-workers 3 --threads 4 --repeats 1 --json "$OUT/ytf68_inception_gpu.json" \
    > "$OUT/inception.log" 2>&1 &
inception=$!
timeout 350 python3 benchmarks/bench_parser_ytf68.py --device cuda --crop-size 128 --image-size 256 --width 1.0 \
    --batch-size 16 --max-epochs 30 --budget-min 4.5 --num-workers 3 --threads 4 --repeats 1 --duplicates drop \
    --json "$OUT/parser_gpu.json" \
    > "$OUT/parser.log" 2>&1 &
parser=$!
OMP_NUM_THREADS=4 timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_device.py tests/test_training.py \
    tests/test_distributed.py > "$OUT/tests.log" 2>&1
echo "tests: rc $? at $((SECONDS - start)) s"; tail -n 15 "$OUT/tests.log"
wait $inception; echo "inception: rc $? at $((SECONDS - start)) s"; tail -n 5 "$OUT/inception.log"
wait $parser; echo "parser: rc $? at $((SECONDS - start)) s"; tail -n 5 "$OUT/parser.log"
