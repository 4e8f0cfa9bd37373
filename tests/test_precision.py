"""token_by_token.precision: a difference told in the steps of the dtype it was computed in."""

import math
import pickle

import pytest
import torch

from token_by_token import precision
from token_by_token.precision import Difference, difference, in_steps, spacing


def next_up(x: float, dtype: torch.dtype) -> float:
    """The next larger number of `dtype` after x (a positive number of that dtype), found by
    adding 1 to its bit pattern: independent of precision.spacing's arithmetic."""
    ints = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}
    t = torch.tensor([x], dtype=dtype)
    return float((t.view(ints[dtype]) + 1).view(dtype)[0])


@pytest.mark.parametrize("dtype, bits", [(torch.bfloat16, 8), (torch.float16, 11),
                                         (torch.float32, 24), (torch.float64, 53)])
def test_significant_bits(dtype, bits):
    assert precision.significant_bits(dtype) == bits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_spacing_is_the_distance_to_the_next_number_of_the_dtype(dtype):
    generator = torch.Generator().manual_seed(0)
    values = torch.exp(torch.empty(300).uniform_(-9, 9, generator=generator)).to(dtype)
    values = [*values.tolist(), 1.0, 2.0, 16.0, 22.375, 0.5, 1024.0]
    if dtype == torch.float16:
        values = [v for v in values if v < 30000]
    for x in values:
        assert spacing(x, dtype) == next_up(x, dtype) - x, (x, dtype)
        assert spacing(-x, dtype) == spacing(x, dtype)


def test_spacing_in_bfloat16_is_two_to_the_exponent_minus_seven():
    assert spacing(22.4, torch.bfloat16) == 0.125  # 2^(4 − 7)
    assert spacing(16.0, torch.bfloat16) == 0.125
    assert spacing(15.99, torch.bfloat16) == 0.0625
    assert spacing(1.0, torch.float32) == 2.0 ** -23
    assert spacing(0.0, torch.bfloat16) == torch.finfo(torch.bfloat16).smallest_normal * 2 ** -7
    assert math.isnan(spacing(float("inf"), torch.bfloat16))


@pytest.mark.parametrize("value, scale, dtype, said", [
    (0.0625, 22.4, torch.bfloat16, "half a bfloat16 step at 22.4"),
    (0.0625, 10.6, torch.bfloat16, "1 bfloat16 step at 10.6"),
    (0.125, 10.1, torch.bfloat16, "2 bfloat16 steps at 10.1"),
    (0.09375, 12.44, torch.bfloat16, "1.5 bfloat16 steps at 12.4"),
    (0.03125, 22.4, torch.bfloat16, "a quarter of a bfloat16 step at 22.4"),
    (2.0 ** -23, 1.0, torch.float32, "1 float32 step at 1"),
    (1e-4, 20.0, torch.bfloat16, "0.0008 of a bfloat16 step at 20"),
    (0.0, 5.0, torch.bfloat16, "none: the same numbers"),
    (4096.0, 1.0, torch.bfloat16, "524,288 bfloat16 steps at 1"),
])
def test_a_difference_in_words(value, scale, dtype, said):
    assert in_steps(value, scale, dtype) == said


def test_the_same_difference_reads_differently_in_another_dtype():
    """The dtype is an argument: 0.0625 at 22.4 is half a step of bfloat16, many of float32."""
    assert in_steps(0.0625, 22.4, torch.bfloat16).startswith("half a bfloat16 step")
    assert in_steps(0.0625, 22.4, torch.float32) == "32,768 float32 steps at 22.4"


def test_difference_of_two_tensors():
    theirs = torch.tensor([22.375, -3.0, 10.0], dtype=torch.bfloat16)
    mine = torch.tensor([22.375, -3.0, 10.0625], dtype=torch.bfloat16)
    d = difference(mine, theirs, theirs.dtype)
    assert float(d) == 0.0625 and d.scale == 22.375 and d.dtype == torch.bfloat16
    assert d.step == 0.125 and d.steps == 0.5
    assert d.said() == "half a bfloat16 step at 22.4"
    assert d <= 0.0625 < 1  # it is the number
    # a float32 copy of bfloat16 results is judged in the dtype it was computed in
    assert difference(mine.float(), theirs.float(), torch.bfloat16).said() == d.said()
    same = difference(theirs, theirs, theirs.dtype)
    assert same == 0 and same.said() == "none: the same numbers"
    assert pickle.loads(pickle.dumps(d)).said() == d.said()


def test_why_says_the_bits_and_the_spacing():
    sentence = precision.why(torch.bfloat16, 22.4)
    assert sentence.startswith("bfloat16 keeps 8 significant bits (about 2.4 decimal digits), "
                               "so near 22.4 its numbers are 0.125 apart")
    assert "float32 keeps 24 significant bits (about 7.2 decimal digits)" in \
        precision.why(torch.float32, 1.0)
    assert isinstance(Difference(0.5, 1.0, torch.float32), float)
