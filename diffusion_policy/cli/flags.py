"""Every flag that more than one command takes, defined once: name, type, default and help.

One spelling per concept across all commands (bac-eval, bac-schedules, bac-collect, bac-benchmark,
bac-suite, bac-default). Cache defaults are CacheConfig's. Flags whose concept can take several
values (`--num_caches`, `--num_bu_blocks`, `--metric`, `--cache_threshold`, `--cache_mode`, `--strategy`,
`--seed`) always parse a comma-separated list; a command that runs one setting takes exactly one value
(`single`); bac-suite runs every setting once per `--seed`. `-o/--output_dir` is always a directory.
Nothing here imports torch: `--help` stays instant.
"""

from __future__ import annotations

import argparse

from diffusion_policy.acceleration.config import CACHE_MODES, COMPILE_MODES, STRATEGIES, CacheConfig
from diffusion_policy.common.threads import add_threads_argument

CACHE_DEFAULTS = CacheConfig()


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    values = [v.strip() for v in str(text).split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def _choice_list(text: str, choices: tuple[str, ...], what: str) -> list[str]:
    values = name_list(text)
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}(s) {unknown}; choose from {', '.join(choices)}")
    return values


def mode_list(text: str) -> list[str]:
    return _choice_list(text, CACHE_MODES, "cache mode")


def strategy_list(text: str) -> list[str]:
    return _choice_list(text, STRATEGIES, "cache strategy")


def add_strategy_flags(parser: argparse.ArgumentParser, forecast_order: bool = True) -> None:
    """--strategy (a list flag, like --num_caches: commands that run one setting take one value) and,
    for commands that run a cache, --forecast_order."""
    parser.add_argument("--strategy", type=strategy_list, default=[CACHE_DEFAULTS.strategy],
                        help="between its update steps a block reuses its last output (reuse, BAC) or forecasts "
                             "it from its last updates (forecast); schedules: the strategies to make "
                             "schedules for, e.g. reuse,forecast (default reuse)")
    if forecast_order:
        parser.add_argument("--forecast_order", type=int, choices=(1, 2), default=CACHE_DEFAULTS.forecast_order,
                            help="forecast: extrapolation order, 1 linear or 2 quadratic (default 1)")


def add_calibration_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", choices=("env", "dataset"), default="env",
                        help="observations to calibrate on: first observations of test episodes, or dataset samples")
    parser.add_argument("--calibration_episodes", type=int, default=None,
                        help="env: calibrate on the first observation of this many test episodes (default 1)")
    parser.add_argument("--calibration_samples", type=int, default=None,
                        help="dataset: calibrate on this many samples spread over the dataset (default 1)")


def calibration_count(args: argparse.Namespace) -> int:
    """The number of calibration observations the flags ask for (ValueError on a mismatched flag)."""
    if args.calibration == "env" and args.calibration_samples is not None:
        raise ValueError("--calibration_samples goes with --calibration dataset; with env use --calibration_episodes")
    if args.calibration == "dataset" and args.calibration_episodes is not None:
        raise ValueError("--calibration_episodes goes with --calibration env; with dataset use --calibration_samples")
    count = args.calibration_episodes if args.calibration == "env" else args.calibration_samples
    count = 1 if count is None else count
    if count < 1:
        raise ValueError(f"the number of calibration observations must be >= 1, got {count}")
    return count


def single(values: list, flag: str):
    """The one value of a list flag, for commands that run one setting (ValueError otherwise)."""
    if len(values) != 1:
        raise ValueError(f"{flag} takes one value here, got {','.join(map(str, values))}")
    return values[0]


# ----------------------------------------------------------------------------- groups of flags
def add_checkpoint_flags(parser: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    parser.add_argument("-c", "--checkpoint", required=required, default=default,
                        help="Diffusion Policy checkpoint (.ckpt)" + (f" (default {default})" if default else ""))
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="allow arbitrary pickled code and any _target_ in the checkpoint (unsafe)")


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--device", default="cpu", help="cpu or cuda:N")
    add_threads_argument(parser)


def add_output_flag(parser: argparse.ArgumentParser, default: str | None, what: str, required: bool = False) -> None:
    parser.add_argument("-o", "--output_dir", default=default, required=required,
                        help=f"directory for {what}" + (f" (default {default})" if default else ""))


def add_cache_mode_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache_mode", type=mode_list, default=[CACHE_DEFAULTS.mode], metavar="MODE[,MODE]",
                        help="original: no caching; threshold: every block recomputes every --cache_threshold "
                             "steps; optimal: per-block BAC schedules from --optimal_steps_dir "
                             f"(default {CACHE_DEFAULTS.mode})")


def add_cache_threshold_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache_threshold", type=int_list, default=[CACHE_DEFAULTS.cache_threshold],
                        metavar="N[,N]", help="threshold mode: update every N denoising steps "
                                              f"(default {CACHE_DEFAULTS.cache_threshold})")


def add_metric_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", "--metrics", dest="metric", type=name_list, default=[CACHE_DEFAULTS.metric],
                        metavar="METRIC[,METRIC]",
                        help=f"similarity metric of the schedules: cosine, l1, l2, mse (default {CACHE_DEFAULTS.metric})")


def add_num_caches_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num_caches", type=int_list, default=[CACHE_DEFAULTS.num_caches], metavar="K[,K]",
                        help=f"optimal mode: update steps per block (default {CACHE_DEFAULTS.num_caches})")


def add_num_bu_blocks_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num_bu_blocks", type=int_list, default=[CACHE_DEFAULTS.num_bu_blocks], metavar="B[,B]",
                        help="optimal mode: blocks refreshed by Bubbling Union "
                             f"(default {CACHE_DEFAULTS.num_bu_blocks})")


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """Every CacheConfig field as a flag, with CacheConfig's defaults."""
    add_cache_mode_flag(parser)
    add_cache_threshold_flag(parser)
    parser.add_argument("--optimal_steps_dir", default=CACHE_DEFAULTS.optimal_steps_dir,
                        help="optimal mode: schedules, e.g. assets/<task>/optimal_steps/cosine")
    add_metric_flag(parser)
    add_num_caches_flag(parser)
    add_num_bu_blocks_flag(parser)
    add_strategy_flags(parser)
    add_recompute_blocks_flag(parser)
    add_cache_switches(parser)


def add_recompute_blocks_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recompute_blocks", type=name_list, default=[], metavar="BLOCK[,BLOCK]",
                        help="blocks that recompute at every step whatever the mode, e.g. decoder.layers.0.ffn "
                             "(the blocks bac-sensitivity finds the actions most sensitive to)")


def add_cache_switches(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow_foreign_schedule", action="store_true",
                        help="optimal mode: use a schedule computed for other weights (refused by default)")
    parser.add_argument("--no_condition_reuse", action="store_true",
                        help="recompute the (constant) condition tokens at every step (bit-exact replay)")
    add_compile_flags(parser)


def add_compile_flags(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--compile", action="store_true",
                        help=help or "torch.compile the denoising step (a few graphs per batch size; "
                                     "the first call compiles; eager with one warning line where unavailable)")
    parser.add_argument("--compile_mode", choices=COMPILE_MODES, default=CACHE_DEFAULTS.compile_mode,
                        help="torch.compile mode (default auto: reduce-overhead = CUDA graphs on CUDA, "
                             "inductor's default on CPU)")


def cache_config_from_args(args: argparse.Namespace, mode: str | None = None, **overrides) -> CacheConfig:
    """The CacheConfig of one setting named by the parsed flags (list flags must hold one value, unless
    `overrides` sets their field)."""
    if mode is not None:
        overrides["mode"] = mode
    list_flags = {"mode": ("cache_mode", "--cache_mode"), "cache_threshold": ("cache_threshold", "--cache_threshold"),
                  "metric": ("metric", "--metric"), "num_caches": ("num_caches", "--num_caches"),
                  "num_bu_blocks": ("num_bu_blocks", "--num_bu_blocks"), "strategy": ("strategy", "--strategy")}
    fields = {name: single(getattr(args, dest, [getattr(CACHE_DEFAULTS, name)]), flag)
              for name, (dest, flag) in list_flags.items() if name not in overrides}
    fields |= dict(
        optimal_steps_dir=getattr(args, "optimal_steps_dir", None),
        reuse_condition=not getattr(args, "no_condition_reuse", False),
        allow_foreign_schedule=getattr(args, "allow_foreign_schedule", False),
        forecast_order=getattr(args, "forecast_order", CACHE_DEFAULTS.forecast_order),
        compile=getattr(args, "compile", False),
        compile_mode=getattr(args, "compile_mode", CACHE_DEFAULTS.compile_mode),
        recompute_blocks=tuple(getattr(args, "recompute_blocks", ())),
    )
    fields.update(overrides)
    return CacheConfig(**fields)


def add_rollout_flags(parser: argparse.ArgumentParser, seed_help: str = "seed of the sampling noise") -> None:
    """Episodes, envs and steps of a rollout; None = the checkpoint's own setting."""
    parser.add_argument("--n_test", type=int, default=None, help="test episodes (default: the checkpoint's)")
    parser.add_argument("--n_train", type=int, default=None, help="train-init episodes (default: the checkpoint's)")
    parser.add_argument("--n_envs", type=int, default=None, help="parallel environments (default: the checkpoint's)")
    parser.add_argument("--max_steps", type=int, default=None, help="env steps per episode (default: the checkpoint's)")
    add_steps_and_seed_flags(parser, seed_help)


def add_steps_and_seed_flags(parser: argparse.ArgumentParser, seed_help: str = "seed of the sampling noise") -> None:
    parser.add_argument("--num_inference_steps", type=int, default=None,
                        help="denoising steps (default: the checkpoint's)")
    add_seed_flag(parser, seed_help)


def add_seed_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """--seed: a list flag like --num_caches (bac-suite runs every setting once per seed; the commands that
    run once take one value: `single(args.seed, "--seed")`)."""
    parser.add_argument("--seed", type=int_list, default=[0], metavar="S[,S]", help=f"{help} (default 0)")


def add_latency_samples_flag(parser: argparse.ArgumentParser) -> None:
    from diffusion_policy.env_runner.settings import EvalSettings

    parser.add_argument("--latency_samples", type=int, default=EvalSettings.latency_samples,
                        help="recorded observations re-timed through the cached mode and original "
                             f"(default {EvalSettings.latency_samples})")


def add_video_flag(parser: argparse.ArgumentParser, default: bool = False, what: str = "record no episode videos"
                   ) -> None:
    parser.add_argument("--skip_video", action=argparse.BooleanOptionalAction, default=default,
                        help=f"{what} (default {'on' if default else 'off'})")


def cache_flag_names() -> set[str]:
    """The dests of add_cache_flags (for tests that check every command uses this builder)."""
    parser = argparse.ArgumentParser()
    add_cache_flags(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}



# ----------------------------------------------------------------------------- the way back
def cache_config_flags(config: CacheConfig) -> list[str]:
    """The flags that give `config` (cache_config_from_args's inverse; the suite builds runs with it)."""
    args = ["--cache_mode", config.mode]
    if config.mode == "threshold":
        args += ["--cache_threshold", str(config.cache_threshold)]
    elif config.mode == "optimal":
        args += ["--optimal_steps_dir", str(config.optimal_steps_dir), "--metric", config.metric,
                 "--num_caches", str(config.num_caches), "--num_bu_blocks", str(config.num_bu_blocks)]
    if config.strategy != "reuse":
        args += ["--strategy", config.strategy, "--forecast_order", str(config.forecast_order)]
    if config.recompute_blocks:
        args += ["--recompute_blocks", ",".join(config.recompute_blocks)]
    if not config.reuse_condition:
        args.append("--no_condition_reuse")
    if config.allow_foreign_schedule:
        args.append("--allow_foreign_schedule")
    if config.compile:
        args += ["--compile", "--compile_mode", config.compile_mode]
    return args


def eval_settings_flags(settings) -> list[str]:
    """The rollout flags that give an env_runner.settings.EvalSettings."""
    args = []
    for name in ("n_test", "n_train", "n_envs", "max_steps", "threads"):
        value = getattr(settings, name)
        if value is not None:
            args += [f"--{name}", str(value)]
    args += ["--seed", str(settings.seed), "--latency_samples", str(settings.latency_samples)]
    args.append("--skip_video" if settings.skip_video else "--no-skip_video")
    return args
