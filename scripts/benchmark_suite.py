"""The original script path of `bac-suite` (diffusion_policy/cli/suite.py): `python scripts/benchmark_suite.py --help`."""

import sys

from diffusion_policy.cli.suite import main

if __name__ == "__main__":
    sys.exit(main())
