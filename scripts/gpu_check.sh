#!/usr/bin/env bash
# The CUDA path on one GPU, in under 8 minutes: the `gpu` tests (no host sync in the denoising loop,
# compiled = eager with CUDA graphs, pinned copies) and the benchmark at batch 1 and 28 (original,
# threshold 5, optimal num_caches 5 and 10 with BU 3; each eager and compiled). Writes one JSON:
#
#     bash scripts/gpu_check.sh [output_dir]        # default results/gpu_check -> gpu_check.json
#
# Needs the package installed with a CUDA build of torch (pip install torch, then pip install -e
# ".[test]"). GPU index: CUDA_VISIBLE_DEVICES, or GPU_CHECK_DEVICE (default cuda:0).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/gpu_check}"
DEVICE="${GPU_CHECK_DEVICE:-cuda:0}"
PYTHON="${PYTHON:-python}"
mkdir -p "$OUT"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device visible to $("$PYTHON" -c 'import torch; print("torch", torch.__version__)'); run this on a GPU machine with a CUDA build of torch" >&2
  exit 2
fi

start=$(date +%s)
tests_rc=0
timeout 300 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py \
    --junitxml="$OUT/gpu_tests.xml" -o addopts="" || tests_rc=$?
bench_rc=0
timeout 360 "$PYTHON" -m diffusion_policy.cli.benchmark --device "$DEVICE" --batch_sizes 1,28 \
    --cache_threshold 5 --num_caches 5,10 --num_bu_blocks 3 --compile --repeats 10 --warmup 3 \
    --no_torch_reference -o "$OUT" || bench_rc=$?

"$PYTHON" - "$OUT" "$tests_rc" "$bench_rc" "$(( $(date +%s) - start ))" <<'PY'
import json, sys, subprocess, xml.etree.ElementTree as ET
from pathlib import Path
out, tests_rc, bench_rc, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
import torch
report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
          "wall_s": seconds, "tests_rc": tests_rc, "benchmark_rc": bench_rc, "tests": {}, "benchmark": None}
junit = out / "gpu_tests.xml"
if junit.exists():
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                report["tests"].setdefault("messages", {})[case.get("name")] = (child.get("message") or "")[:300]
        report["tests"][case.get("name")] = outcome
bench = out / "benchmark_inference.json"
if bench.exists():
    report["benchmark"] = json.loads(bench.read_text())
(out / "gpu_check.json").write_text(json.dumps(report, indent=1))
print(f"wrote {out / 'gpu_check.json'} ({seconds} s; tests rc {tests_rc}, benchmark rc {bench_rc})")
PY
exit $(( tests_rc != 0 || bench_rc != 0 ))
