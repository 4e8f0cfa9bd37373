"""How large a difference between two results is, in the steps of the number type they were
computed in, so that a reader can tell rounding from a bug.

A float type keeps a fixed number of significant bits: bfloat16 8, float16 11, float32 24. From
2^e up to 2^(e+1) its numbers are evenly spaced, 2^(e − bits + 1) apart (the unit in the last
place), and every result is rounded to one of them. So 0.0625 between two bfloat16 tables whose
largest value is 22.4 is half a step there: the last bit, not a bug. The type is always an
argument (the tensors' or the model's dtype), never assumed. Pure functions; no Streamlit.
"""

import math

import torch


def name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bfloat16"."""
    return str(dtype).removeprefix("torch.")


def significant_bits(dtype: torch.dtype) -> int:
    """The bits of a float type's significand, the implicit leading 1 included: bfloat16 8,
    float16 11, float32 24, float64 53 (its machine epsilon is 2^(1 − bits))."""
    return 1 - round(math.log2(torch.finfo(dtype).eps))


def decimal_digits(dtype: torch.dtype) -> float:
    """About how many decimal digits those bits hold: bits × log10(2)."""
    return significant_bits(dtype) * math.log10(2)


def spacing(magnitude: float, dtype: torch.dtype) -> float:
    """The distance from a number of this magnitude to the next larger one of `dtype` (the
    unit in the last place): 2^(floor(log2 m) − (bits − 1)); below the smallest normal number,
    the constant spacing of the subnormal ones."""
    info = torch.finfo(dtype)
    m = abs(float(magnitude))
    if not math.isfinite(m):
        return math.nan
    _, exponent = math.frexp(max(m, info.smallest_normal))  # m = f · 2^exponent, ½ ≤ f < 1
    return info.eps * 2.0 ** (exponent - 1)


class Difference(float):
    """The largest |a − b| between two results (it is that float), with what it is to be
    judged against: the largest |value| of the results (`scale`) and the float type they were
    computed in (`dtype`)."""

    def __new__(cls, value: float, scale: float, dtype: torch.dtype):
        self = super().__new__(cls, value)
        self.scale, self.dtype = float(scale), dtype
        return self

    def __reduce__(self):
        return Difference, (float(self), self.scale, self.dtype)

    @property
    def step(self) -> float:
        """The spacing of `dtype` at `scale`."""
        return spacing(self.scale, self.dtype)

    @property
    def steps(self) -> float:
        """The difference in those steps."""
        return float(self) / self.step if self else 0.0

    def said(self) -> str:
        """In words, e.g. "half a bfloat16 step at 22.4" or "none: the same numbers"."""
        return in_steps(float(self), self.scale, self.dtype)


PIECE = 1 << 17  # values per piece of a reduction over a large tensor: a float32 piece is
# 512 KB, under the 1 MB above which this app has glibc map every block afresh (and the
# kernel fault its pages in: model.return_large_blocks_to_the_system). Whole-tensor
# temporaries made Chapter 2's checks at 1,024 tokens 4-50 x slower (measured).


def largest_abs(t: torch.Tensor) -> float:
    """The largest |value| of t (0 for an empty t), from its smallest and largest values in
    its own dtype: exact, and no copy (a float32 copy and its |.| over [16, 1,024, 1,024]
    attention weights took 57 ms, this 1 ms). NaN anywhere gives NaN, as |t|.max() does."""
    if not t.numel():
        return 0.0
    return float(torch.stack(torch.aminmax(t)).abs().max())


def difference(mine: torch.Tensor, theirs: torch.Tensor, dtype: torch.dtype) -> Difference:
    """The largest |mine − theirs| (computed in float32), judged at the largest |theirs|,
    for results computed in `dtype` (pass the dtype they were computed in: a float32 copy
    of bfloat16 results is still bfloat16's). Piece by piece (PIECE): the same number."""
    if not theirs.numel():
        return Difference(0.0, 0.0, dtype)
    mine, theirs = (t.reshape(-1) for t in torch.broadcast_tensors(mine, theirs))
    pieces = [(a.float() - b.float()).abs().max()
              for a, b in zip(mine.split(PIECE), theirs.split(PIECE), strict=True)]
    return Difference(float(torch.stack(pieces).max()), largest_abs(theirs), dtype)


def count(steps: float) -> str:
    """How many steps, as words: "1", "3", "half a", "a quarter of a", "1.4", "0.003 of a"."""
    whole = round(steps)
    if whole >= 1 and abs(steps - whole) <= 0.01 * steps:
        return f"{whole:,}"
    if steps == 0.5:
        return "half a"
    if steps == 0.25:
        return "a quarter of a"
    return f"{steps:.2g} of a" if steps < 1 else f"{steps:,.2g}" if steps < 100 else \
        f"{steps:,.0f}"


def in_steps(value: float, scale: float, dtype: torch.dtype) -> str:
    """A difference in the steps of `dtype` at `scale`: "half a bfloat16 step at 22.4",
    "3 float32 steps at 1"; "none: the same numbers" for 0."""
    if value == 0:
        return "none: the same numbers"
    steps = value / spacing(scale, dtype)
    amount = count(steps)
    plural = "" if amount == "1" or amount.endswith(" a") else "s"
    return f"{amount} {name(dtype)} step{plural} at {scale:.3g}"


def why(dtype: torch.dtype, scale: float) -> str:
    """One sentence: why two correct computations in `dtype` may differ in the last bits."""
    return (f"{name(dtype)} keeps {significant_bits(dtype)} significant bits (about "
            f"{decimal_digits(dtype):.1f} decimal digits), so near {scale:.3g} its numbers are "
            f"{spacing(scale, dtype):.3g} apart and every result is rounded to one of them: two "
            "correct computations that add the same numbers in another order can round to "
            "neighbouring numbers.")
