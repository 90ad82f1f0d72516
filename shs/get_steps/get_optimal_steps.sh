#!/usr/bin/env bash
# BAC schedules for every task's train_0 max checkpoint, into assets/<task>/.
#   ./shs/get_steps/get_optimal_steps.sh --device cuda:0 --num_caches 5 [--ph_only|--mh_only|--lowdim_only]
#       [--task can_ph] [--checkpoint_root checkpoint] [--force_recompute] [--dry_run]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python scripts/benchmark_suite.py schedules "$@"
