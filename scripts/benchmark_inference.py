"""The original script path of `bac-benchmark` (diffusion_policy/cli/benchmark.py): `python scripts/benchmark_inference.py --help`."""

import sys

from diffusion_policy.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
