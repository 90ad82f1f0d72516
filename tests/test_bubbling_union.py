"""Bubbling Union and add_final_step on a hand-built 3-layer example."""

import copy

import pytest

from diffusion_policy.activation_utils.bubbling_union import (
    add_final_step,
    block_layer,
    bubbling_union,
    select_bu_blocks,
)

# 3 decoder layers, N = 10 denoising steps.
SCHEDULES = {
    "decoder.layers.0.sa": [0, 5],
    "decoder.layers.0.ca": [0, 3],
    "decoder.layers.0.ffn": [0, 4],
    "decoder.layers.1.sa": [0, 6],
    "decoder.layers.1.ca": [0, 2],
    "decoder.layers.1.ffn": [0, 7],
    "decoder.layers.2.sa": [0, 8],
    "decoder.layers.2.ca": [0, 1],
    "decoder.layers.2.ffn": [0, 9],
}
ERRORS = {
    "decoder.layers.0.sa": 0.9,  # rank 1
    "decoder.layers.0.ca": 0.1,
    "decoder.layers.0.ffn": 0.5,  # rank 4
    "decoder.layers.1.sa": 0.2,
    "decoder.layers.1.ca": 0.8,  # rank 2
    "decoder.layers.1.ffn": 0.3,
    "decoder.layers.2.sa": 0.05,
    "decoder.layers.2.ca": 0.4,
    "decoder.layers.2.ffn": 0.7,  # rank 3
}


def test_top3_blocks_merge_ffn_steps_of_their_layer_and_deeper():
    result = bubbling_union(SCHEDULES, ERRORS, 3)
    expected = dict(SCHEDULES)
    expected["decoder.layers.0.sa"] = [0, 4, 5, 7, 9]  # own + ffn0 [0,4] + ffn1 [0,7] + ffn2 [0,9]
    expected["decoder.layers.1.ca"] = [0, 2, 7, 9]  # own + ffn1 + ffn2
    expected["decoder.layers.2.ffn"] = [0, 9]  # only itself is at layer >= 2
    assert result == expected


def test_selected_ffn_block_merges_deeper_ffn_blocks_only():
    result = bubbling_union(SCHEDULES, ERRORS, 4)
    assert result["decoder.layers.0.ffn"] == [0, 4, 7, 9]
    assert result["decoder.layers.1.sa"] == [0, 6]  # rank 6, not selected


def test_bu_uses_input_ffn_steps_not_updated_ones():
    # ffn0 is selected too; 0.sa must merge ffn0's ACS steps, the same as without ffn0 selected
    assert bubbling_union(SCHEDULES, ERRORS, 4)["decoder.layers.0.sa"] == [0, 4, 5, 7, 9]


def test_m_zero_returns_unchanged_copy_and_inputs_are_not_mutated():
    before = copy.deepcopy(SCHEDULES)
    result = bubbling_union(SCHEDULES, ERRORS, 0)
    assert result == SCHEDULES and result is not SCHEDULES
    result["decoder.layers.0.sa"].append(99)
    bubbling_union(SCHEDULES, ERRORS, 9)
    assert SCHEDULES == before


def test_m_larger_than_block_count_selects_all():
    result = bubbling_union(SCHEDULES, ERRORS, 100)
    assert result["decoder.layers.2.ca"] == [0, 1, 9]
    assert result["decoder.layers.0.ca"] == [0, 3, 4, 7, 9]


def test_selection_ranks_by_error_descending():
    assert select_bu_blocks(ERRORS, 3) == ["decoder.layers.0.sa", "decoder.layers.1.ca", "decoder.layers.2.ffn"]
    with pytest.raises(ValueError, match="num_bu_blocks"):
        select_bu_blocks(ERRORS, -1)


def test_malformed_names_and_missing_errors_raise():
    assert block_layer("decoder.layers.11.ffn") == 11
    for bad in ["decoder.layers.x.sa", "encoder.layers.0.sa", "decoder.layers.0.mlp", "decoder.layers.0.sa.extra"]:
        with pytest.raises(ValueError, match="malformed block name"):
            block_layer(bad)
    with pytest.raises(ValueError, match="malformed block name"):
        bubbling_union({"layers.0": [0]}, {"layers.0": 1.0}, 1)
    with pytest.raises(ValueError, match="no caching error"):
        bubbling_union(SCHEDULES, {"decoder.layers.0.sa": 1.0}, 1)


def test_add_final_step():
    result = add_final_step({"a": [0, 3], "b": [0, 9], "c": [0]}, 10)
    assert result == {"a": [0, 3, 9], "b": [0, 9], "c": [0, 9]}
    assert add_final_step({"a": [0]}, 1) == {"a": [0]}
    source = {"a": [3, 0]}
    assert add_final_step(source, 5) == {"a": [0, 3, 4]} and source == {"a": [3, 0]}
    with pytest.raises(ValueError, match="outside"):
        add_final_step({"a": [0, 12]}, 10)
    with pytest.raises(ValueError, match="num_steps"):
        add_final_step({"a": [0]}, 0)
