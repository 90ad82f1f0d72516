"""The original script path of `bac-eval` (diffusion_policy/cli/evaluate.py): `python scripts/eval_fast_diffusion_policy.py --help`."""

import sys

from diffusion_policy.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
