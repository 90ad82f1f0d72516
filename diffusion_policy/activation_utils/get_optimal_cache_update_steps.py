"""The original script path of `bac-schedules` (diffusion_policy/cli/schedules.py): `python diffusion_policy/activation_utils/get_optimal_cache_update_steps.py --help`."""

import sys

from diffusion_policy.cli.schedules import main

if __name__ == "__main__":
    sys.exit(main())
