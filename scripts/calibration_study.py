"""The script path of `bac-calibration` (diffusion_policy/cli/calibration.py): `python scripts/calibration_study.py --help`."""

import sys

from diffusion_policy.cli.calibration import main

if __name__ == "__main__":
    sys.exit(main())
