#!/usr/bin/env bash
# Evaluate every task x train_<i> x {max,latest} checkpoint x cache setting into results/, then summarise.
#   ./shs/benchmark/run_all_benchmarks.sh --device cuda:0 --skip_video [--ph_only|--mh_only|--lowdim_only]
#       [--task can_ph] [--cache_mode original,threshold,optimal] [--cache_threshold 5,10]
#       [--num_caches 5,8,10] [--num_bu_blocks 0,3] [--seeds 0,1,2 (training)] [--seed 0,1,2 (sampling)]
#       [--jobs N] [--backend local|ray]
#       [--dry_run]   (all flags: python scripts/benchmark_suite.py run --help)
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python scripts/benchmark_suite.py run "$@"
