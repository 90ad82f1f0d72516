"""The script path of `bac-learnability` (diffusion_policy/cli/learnability.py): `python scripts/demo_learnability.py --help`."""

import sys

from diffusion_policy.cli.learnability import main

if __name__ == "__main__":
    sys.exit(main())
