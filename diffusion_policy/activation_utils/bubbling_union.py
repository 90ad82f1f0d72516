"""Bubbling Union (BU): refresh high-error blocks whenever a deeper FFN refreshes.

Caching error compounds through the decoder: when a deep FFN recomputes, a
shallower block that stays cached feeds it stale inputs. BU picks the m blocks
with the largest caching error and gives each the union of its own update steps
and the update steps of every FFN block at its layer or deeper.
"""

import re

BLOCK_NAME_PATTERN = re.compile(r"^decoder\.layers\.(\d+)\.(sa|ca|ffn)$")


def block_layer(block_name: str) -> int:
    """Decoder layer index of a block named 'decoder.layers.{i}.{sa|ca|ffn}'."""
    match = BLOCK_NAME_PATTERN.match(block_name)
    if match is None:
        raise ValueError(
            f"malformed block name {block_name!r}; expected 'decoder.layers.<i>.sa', '.ca' or '.ffn'"
        )
    return int(match.group(1))


def rank_blocks(block_errors: dict[str, float]) -> list[str]:
    """Block names by caching error, largest first (ties keep the input order)."""
    return sorted(block_errors, key=lambda name: -block_errors[name])


def select_bu_blocks(block_errors: dict[str, float], num_bu_blocks: int) -> list[str]:
    """The m = num_bu_blocks highest-error blocks (all blocks if m exceeds their count)."""
    if isinstance(num_bu_blocks, bool) or not isinstance(num_bu_blocks, int) or num_bu_blocks < 0:
        raise ValueError(f"num_bu_blocks must be an integer >= 0, got {num_bu_blocks!r}")
    return rank_blocks(block_errors)[:num_bu_blocks]


def bubbling_union(
    schedules: dict[str, list[int]],
    block_errors: dict[str, float],
    num_bu_blocks: int,
) -> dict[str, list[int]]:
    """New schedules where each of the top num_bu_blocks blocks (by error) in layer L
    also updates at every step of the FFN blocks of layers j >= L.

    FFN steps are taken from the input schedules, so the result does not depend
    on the order in which selected blocks are processed. Inputs are not mutated.
    """
    layers = {name: block_layer(name) for name in schedules}
    missing = sorted(set(schedules) - set(block_errors))
    if missing:
        raise ValueError(f"block_errors has no caching error for blocks {missing}; recompute the schedule files")

    errors_of_scheduled = {name: block_errors[name] for name in schedules}
    selected = select_bu_blocks(errors_of_scheduled, num_bu_blocks)
    ffn_blocks = [name for name in schedules if name.endswith(".ffn")]

    result = {name: sorted(steps) for name, steps in schedules.items()}
    for name in selected:
        union = set(schedules[name])
        for ffn in ffn_blocks:
            if layers[ffn] >= layers[name]:
                union.update(schedules[ffn])
        result[name] = sorted(union)
    return result


def add_final_step(schedules: dict[str, list[int]], num_steps: int) -> dict[str, list[int]]:
    """New schedules in which the last denoising step (num_steps - 1) is an update step for every block."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    result = {}
    for name, steps in schedules.items():
        out_of_range = [s for s in steps if not 0 <= s < num_steps]
        if out_of_range:
            raise ValueError(
                f"block {name!r} has update steps {out_of_range} outside [0, {num_steps}); "
                "the schedule was computed for another number of denoising steps"
            )
        result[name] = sorted(set(steps) | {num_steps - 1})
    return result
