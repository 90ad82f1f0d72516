"""The original script path of `bac-default` (diffusion_policy/cli/default.py): `python scripts/run_default.py --help`."""

import sys

from diffusion_policy.cli.default import main

if __name__ == "__main__":
    sys.exit(main())
