"""The original script path of `bac-collect` (diffusion_policy/cli/collect.py): `python scripts/collect_lerobot_data.py --help`."""

import sys

from diffusion_policy.cli.collect import main

if __name__ == "__main__":
    sys.exit(main())
