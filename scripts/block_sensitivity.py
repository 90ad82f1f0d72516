"""The script path of `bac-sensitivity` (diffusion_policy/cli/sensitivity.py): `python scripts/block_sensitivity.py --help`."""

import sys

from diffusion_policy.cli.sensitivity import main

if __name__ == "__main__":
    sys.exit(main())
