"""The original script path of `bac-demos` (diffusion_policy/cli/demos.py): `python scripts/generate_demos.py --help`."""

import sys

from diffusion_policy.cli.demos import main

if __name__ == "__main__":
    sys.exit(main())
