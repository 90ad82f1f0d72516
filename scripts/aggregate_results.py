"""The original script path of `bac-aggregate` (diffusion_policy/cli/aggregate.py): `python scripts/aggregate_results.py --help`."""

import sys

from diffusion_policy.cli.aggregate import main

if __name__ == "__main__":
    sys.exit(main())
