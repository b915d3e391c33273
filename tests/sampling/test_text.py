"""Prompt padding for the sampler: power-of-two width buckets, right padding, filler rows."""

import numpy as np
import pytest

from align.sampling.text import bucket, pad_prompts


def test_bucket_is_the_next_power_of_two_from_the_minimum():
    assert [bucket(n) for n in (1, 16, 17, 33, 64, 65)] == [16, 16, 32, 64, 64, 128]
    assert bucket(3, minimum=2) == 4


def test_pad_prompts_right_pads_to_the_bucket_and_fills_spare_rows():
    tokens, lengths = pad_prompts([[5, 6, 7], [8] * 17], pad_id=0, rows=3)
    assert tokens.shape == (3, 32) and tokens.dtype == np.int32
    np.testing.assert_array_equal(lengths, [3, 17, 1])
    np.testing.assert_array_equal(tokens[0, :4], [5, 6, 7, 0])
    assert (tokens[1, :17] == 8).all() and (tokens[1, 17:] == 0).all()
    assert (tokens[2] == 0).all()  # a filler row: one pad token, length 1


def test_pad_prompts_defaults_to_one_row_per_prompt_and_rejects_overflow():
    tokens, lengths = pad_prompts([[1], [2, 3]], pad_id=9)
    np.testing.assert_array_equal(tokens[:, :3], [[1, 9, 9], [2, 3, 9]])
    np.testing.assert_array_equal(lengths, [1, 2])
    with pytest.raises(ValueError, match="3 prompts do not fit in 2 rows"):
        pad_prompts([[1], [2], [3]], pad_id=0, rows=2)
