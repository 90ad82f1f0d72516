#!/usr/bin/env bash
# Build the virtualenv in which the tests load our datasets with real lerobot 0.4.4
# (tests/test_lerobot_load.py, tests/test_collect_lerobot.py). Run once; .ci/run runs it.
#
#   bash scripts/build_lerobot_env.sh            # -> $BAC_LEROBOT_VENV or ~/.cache/bac-lerobot-venv
#
# CPU-only and fully pinned: torch==2.13.0 first (the CPU build; a plain `pip install lerobot` would
# pull a CUDA torch of several GB), then every package of scripts/lerobot_env/requirements.txt with
# --no-deps. The venv does not see the packages of the environment that runs the tests. It is built
# in a temporary directory and moved into place when complete, with a marker naming what it holds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
requirements="$here/lerobot_env/requirements.txt"
venv="${BAC_LEROBOT_VENV:-$HOME/.cache/bac-lerobot-venv}"
python="${PYTHON:-python3}"
marker_text="$(cat "$requirements"; "$python" -c 'import sys; print(sys.version)')"

if [ -f "$venv/bac-requirements.txt" ] && [ "$(cat "$venv/bac-requirements.txt")" = "$marker_text" ]; then
  echo "lerobot cross-check environment is up to date: $venv"
  exit 0
fi
mkdir -p "$(dirname "$venv")"
tmp="$venv.building"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "building the lerobot cross-check environment in $venv (about a minute)"
"$python" -m venv "$tmp"
"$tmp/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0
"$tmp/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$requirements"
# what the tests import, checked here so that a broken environment fails the build, not the tests
"$tmp/bin/python" - <<'PY'
import torch
lib = torch.library.Library("torchvision", "DEF")  # see CHECK_SCRIPT in tests/test_lerobot_load.py
lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: F401
assert torch.__version__.startswith("2.13.0") and not torch.version.cuda, torch.__version__
PY
printf '%s' "$marker_text" > "$tmp/bac-requirements.txt"
rm -rf "$venv"
mv "$tmp" "$venv"
trap - EXIT
echo "built $venv"
