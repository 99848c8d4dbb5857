#!/usr/bin/env bash
# One call on a lent GPU machine: the CUDA tests, then gpu_lm.py's parts 1-2 (speed, DDP), then part 3
# (train to the target) for as many epochs as the time left allows. Each part runs under its own timeout,
# so a failure in one leaves the others' results. Logs and JSON go to $OUT (default /tmp/gpu-run).
#
#     RNNKIT_HOME=.gpuhome rnnkit data fetch wikitext-2     # here, first: the machine has no network
#     bash benchmarks/gpu_run.sh [SECONDS]                 # there: SECONDS for the whole script (default 560)
#
# The machine's own python3 (its torch, NumPy, pytest, hypothesis) runs the checkout through PYTHONPATH.
set -u
budget=${1:-560}
start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }
OUT=${OUT:-/tmp/gpu-run}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 RNNKIT_HOME=${RNNKIT_HOME:-$PWD/.gpuhome}
py=${PYTHON:-python3}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv; nproc
  $py -c "import sys, numpy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'torch',
torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/env.txt"

echo "== CUDA tests ($(left) s left)"
timeout 150 $py -m pytest -q -p no:cacheprovider -rs tests/test_precision.py tests/test_torch_engine.py \
  tests/test_torch_hot_loop.py tests/test_distributed.py tests/test_bench_gpu_lm.py >"$OUT/tests.txt" 2>&1
echo "pytest exit $?"; tail -12 "$OUT/tests.txt"

echo "== speed and DDP ($(left) s left)"
timeout $(( $(left) / 2 )) $py benchmarks/gpu_lm.py --out "$OUT/gpu_lm.json" >"$OUT/gpu_lm.txt" 2>&1
echo "gpu_lm exit $?"; grep -v "round [0-9]" "$OUT/gpu_lm.txt" | tail -20

# Part 3: the epochs that fit in what is left (an epoch is 2.09M tokens at part 1's fp32 batch-20 rate).
epochs=$($py - "$OUT/gpu_lm.json" "$(left)" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["speed"]
    rate = next(r["rnnkit_tokens_per_s"] for r in rows if r["precision"] == "fp32" and r["batch_size"] == 20)
except Exception:  # part 1 failed or ran out of time: a few epochs, cut by the timeout if need be
    rate = None
seconds = int(sys.argv[2]) - 40  # loading, validations (one an epoch), the test pass
print(3 if rate is None else max(0, min(12, int(seconds * 0.85 * rate / 2.09e6))))
EOF
)
echo "== train to the target: $epochs epoch(s) ($(left) s left)"
if [ "$epochs" -gt 0 ]; then
  timeout $(( $(left) - 5 )) $py benchmarks/gpu_lm.py --train-to-target --target-epochs "$epochs" --verbose \
    --target-eval-every 2984 \
    --out "$OUT/gpu_lm_target.json" >"$OUT/gpu_lm_target.txt" 2>&1
  echo "train-to-target exit $?"; tail -6 "$OUT/gpu_lm_target.txt"
fi
echo "== done in $(( $(date +%s) - start )) s"
