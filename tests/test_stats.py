"""toklab.stats: t intervals across seeds and the paired bootstrap over documents and seeds.

Expected values are hand-computed literals (textbook t table, arithmetic written out in comments),
never produced by the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from toklab.stats import (
    Interval,
    bits_per_byte_of,
    mean_interval,
    paired_bootstrap_difference,
    t_quantile,
    verdict,
)

LN2 = 0.6931471805599453  # ln 2, written out so the tests do not share the module's constant


# --- t_quantile ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042), (120, 1.980), (10**9, 1.960)],
)
def test_t_quantile_matches_textbook_95(df: int, expected: float) -> None:
    assert t_quantile(df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_other_levels() -> None:
    assert t_quantile(1, 0.99) == pytest.approx(63.657, abs=5e-4)
    assert t_quantile(2, 0.90) == pytest.approx(2.920, abs=5e-4)
    assert t_quantile(10**9, 0.90) == pytest.approx(1.645, abs=5e-4)


def test_t_quantile_interpolates_in_inverse_df() -> None:
    # df 50 lies between rows 40 (2.021) and 60 (2.000). In 1/df: (1/50 - 1/60) / (1/40 - 1/60) = 0.4,
    # so 2.000 + 0.4 * 0.021 = 2.0084 (the exact value is 2.0086).
    assert t_quantile(50) == pytest.approx(2.0084, abs=1e-6)


def test_t_quantile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        t_quantile(0)
    with pytest.raises(ValueError):
        t_quantile(5, level=0.8)


def test_t_quantile_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for level in (0.90, 0.95, 0.99):
        for df in (1, 2, 3, 7, 15, 29, 30, 31, 35, 45, 50, 75, 100, 150, 1000):
            assert t_quantile(df, level) == pytest.approx(stats.t.ppf(0.5 + level / 2, df), abs=1e-3)


# --- mean_interval ------------------------------------------------------------------------------


def test_mean_interval_three_values() -> None:
    # mean 2, s = 1 (ddof=1), half width 4.303 / sqrt(3) = 2.48434
    interval = mean_interval([1.0, 2.0, 3.0])
    assert interval.estimate == pytest.approx(2.0)
    assert interval.half_width() == pytest.approx(2.48434, abs=1e-4)
    assert interval.low == pytest.approx(2.0 - 2.48434, abs=1e-4)
    assert interval.high == pytest.approx(2.0 + 2.48434, abs=1e-4)
    assert interval.n == 3
    assert interval.level == 0.95
    assert "3 seeds" in interval.method


def test_mean_interval_three_values_straddles_zero() -> None:
    # low = 2 - 2.48434 = -0.48434 < 0 < high, so zero is inside.
    assert not mean_interval([1.0, 2.0, 3.0]).excludes_zero()


def test_mean_interval_five_values() -> None:
    # mean 14, s = sqrt(40 / 4) = sqrt(10); half width 2.776 * sqrt(10) / sqrt(5) = 2.776 * sqrt(2) = 3.925857
    interval = mean_interval([10.0, 12.0, 14.0, 16.0, 18.0])
    assert interval.estimate == pytest.approx(14.0)
    assert interval.low == pytest.approx(14.0 - 3.925857, abs=1e-4)
    assert interval.high == pytest.approx(14.0 + 3.925857, abs=1e-4)
    assert interval.excludes_zero()


def test_mean_interval_one_value_has_no_interval() -> None:
    interval = mean_interval([1.25])
    assert interval.estimate == 1.25
    assert math.isnan(interval.low) and math.isnan(interval.high)
    assert math.isnan(interval.half_width())
    assert not interval.excludes_zero()
    assert interval.n == 1


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [float("inf"), 2.0], []])
def test_mean_interval_rejects_non_finite_or_empty(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        mean_interval(bad)


# --- Interval -----------------------------------------------------------------------------------


def test_interval_excludes_zero() -> None:
    assert Interval(1.0, 0.5, 1.5, 3, "t").excludes_zero()
    assert Interval(-1.0, -1.5, -0.5, 3, "t").excludes_zero()
    assert not Interval(0.1, -0.5, 0.7, 3, "t").excludes_zero()
    assert not Interval(0.0, 0.0, 0.0, 3, "t").excludes_zero()
    assert not Interval(1.0, math.nan, 2.0, 3, "t").excludes_zero()
    assert Interval(1.0, 0.5, 1.5, 3, "t").half_width() == 0.5


# --- bits_per_byte_of ---------------------------------------------------------------------------


def test_bits_per_byte_of() -> None:
    # (1 + 2) nats over (3 + 1) bytes: 3 / (4 ln 2) = 1.0820212806667226
    assert bits_per_byte_of(np.array([1.0, 2.0]), np.array([3, 1])) == pytest.approx(1.0820212806667226)
    with pytest.raises(ValueError):
        bits_per_byte_of(np.array([1.0, 2.0]), np.array([0, 0]))
    with pytest.raises(ValueError):
        bits_per_byte_of(np.array([1.0, 2.0]), np.array([1, 2, 3]))


# --- paired_bootstrap_difference ----------------------------------------------------------------


def noisy_losses(rng: np.random.Generator, doc_bytes: np.ndarray, seeds: int, bpb: float, noise: float) -> np.ndarray:
    """Per-document losses in nats for `seeds` runs near `bpb` bits/byte, each document noisy."""
    per_byte = bpb + noise * rng.standard_normal((seeds, doc_bytes.size))
    return per_byte * LN2 * doc_bytes


def test_constant_per_byte_difference_gives_a_point_interval() -> None:
    # a = b + 0.5 ln2 * bytes: every resample of documents gives a - b = 0.5 bits/byte exactly.
    rng = np.random.default_rng(1)
    doc_bytes = rng.integers(50, 500, size=40).astype(float)
    b = rng.uniform(0.5, 3.0, size=40) * doc_bytes
    a = b + 0.5 * LN2 * doc_bytes
    diff = paired_bootstrap_difference(a, b, doc_bytes, replicates=500)
    assert diff.estimate == pytest.approx(0.5)
    assert diff.low == pytest.approx(0.5)
    assert diff.high == pytest.approx(0.5)
    assert diff.excludes_zero()
    assert diff.n == 40


def test_estimate_on_a_hand_example() -> None:
    # bytes 1 + 2 + 3 = 6. a's seeds total 6 and 12 nats: 1/ln2 and 2/ln2 bits/byte, mean 1.5/ln2.
    # b's one seed totals 3 nats: 0.5/ln2. Difference 1/ln2 = 1.4426950408889634.
    a = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    b = np.array([1.0, 1.0, 1.0])
    diff = paired_bootstrap_difference(a, b, np.array([1, 2, 3]), replicates=200)
    assert diff.estimate == pytest.approx(1.4426950408889634)
    assert "3 documents" in diff.method and "2 vs 1 seeds" in diff.method and "200 replicates" in diff.method


def test_seeds_are_resampled() -> None:
    # Losses proportional to bytes, so document draws change nothing. a's two seeds are 1 and 2
    # bits/byte, b's one seed 0: a replicate's difference is 1.0, 1.5 or 2.0 with chance 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% points are 1.0 and 2.0, around the estimate 1.5.
    doc_bytes = np.array([3.0, 7.0, 2.0, 9.0])
    a = np.vstack([1.0 * LN2 * doc_bytes, 2.0 * LN2 * doc_bytes])
    b = np.zeros(4)
    diff = paired_bootstrap_difference(a, b, doc_bytes, replicates=2000)
    assert diff.estimate == pytest.approx(1.5)
    assert diff.low == pytest.approx(1.0)
    assert diff.high == pytest.approx(2.0)


def test_documents_are_resampled_with_the_right_spread() -> None:
    # One seed each, 1 byte per document, a - b is 0 bits/byte on half the documents and 1 on the
    # other half: the resampled difference is a mean of 100 draws of 0/1, sd 0.5 / sqrt(100) = 0.05,
    # so the 95% interval is about 0.5 -/+ 1.96 * 0.05 = 0.402 .. 0.598.
    doc_bytes = np.ones(100)
    b = np.full(100, 2.0)
    a = b + LN2 * np.tile([0.0, 1.0], 50)
    diff = paired_bootstrap_difference(a, b, doc_bytes, replicates=4000)
    assert diff.estimate == pytest.approx(0.5)
    assert diff.low == pytest.approx(0.402, abs=0.02)
    assert diff.high == pytest.approx(0.598, abs=0.02)


def test_identical_runs_are_indistinguishable() -> None:
    rng = np.random.default_rng(2)
    doc_bytes = rng.integers(100, 1000, size=60).astype(float)
    runs = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.2, noise=0.3)
    diff = paired_bootstrap_difference(runs, runs.copy(), doc_bytes)
    assert diff.estimate == pytest.approx(0.0, abs=1e-12)
    assert diff.low <= 0.0 <= diff.high
    assert diff.low < diff.high  # seed draws differ between a and b, so there is some spread
    assert not diff.excludes_zero()


def test_clearly_separated_runs_exclude_zero() -> None:
    rng = np.random.default_rng(3)
    doc_bytes = rng.integers(100, 1000, size=200).astype(float)
    a = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.0, noise=0.2)
    b = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.3, noise=0.2)
    diff = paired_bootstrap_difference(a, b, doc_bytes)
    assert diff.estimate == pytest.approx(-0.3, abs=0.02)
    assert diff.high < 0
    assert diff.excludes_zero()


def test_tiny_difference_under_noise_does_not_exclude_zero() -> None:
    rng = np.random.default_rng(4)
    doc_bytes = rng.integers(100, 1000, size=50).astype(float)
    a = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.0, noise=0.8)
    b = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.0005, noise=0.8)
    diff = paired_bootstrap_difference(a, b, doc_bytes)
    assert abs(diff.estimate) < diff.half_width()
    assert not diff.excludes_zero()


def test_pairing_cancels_shared_document_difficulty() -> None:
    # Documents vary wildly in difficulty (0.2 .. 4 bits/byte) but a is 0.01 bits/byte better on
    # every one, up to tiny noise. Paired draws cancel the difficulty, so the interval is narrow and
    # excludes zero; drawing documents separately for a and b would bury 0.01 under the spread.
    rng = np.random.default_rng(5)
    doc_bytes = rng.integers(100, 1000, size=300).astype(float)
    difficulty = rng.uniform(0.2, 4.0, size=300)
    b = difficulty * LN2 * doc_bytes
    a = (difficulty - 0.01 + 0.001 * rng.standard_normal(300)) * LN2 * doc_bytes
    diff = paired_bootstrap_difference(a, b, doc_bytes)
    assert diff.estimate == pytest.approx(-0.01, abs=1e-3)
    assert diff.half_width() < 0.002
    assert diff.excludes_zero()


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(6)
    doc_bytes = rng.integers(100, 1000, size=80).astype(float)
    a = noisy_losses(rng, doc_bytes, seeds=2, bpb=1.0, noise=0.5)
    b = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.1, noise=0.5)
    first = paired_bootstrap_difference(a, b, doc_bytes, replicates=300, seed=11)
    again = paired_bootstrap_difference(a, b, doc_bytes, replicates=300, seed=11)
    other = paired_bootstrap_difference(a, b, doc_bytes, replicates=300, seed=12)
    assert first == again
    assert other.estimate == first.estimate
    assert (other.low, other.high) != (first.low, first.high)


def test_chunk_size_does_not_change_the_result() -> None:
    rng = np.random.default_rng(7)
    doc_bytes = rng.integers(100, 1000, size=37).astype(float)
    a = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.0, noise=0.5)
    b = noisy_losses(rng, doc_bytes, seeds=2, bpb=1.05, noise=0.5)
    whole = paired_bootstrap_difference(a, b, doc_bytes, replicates=301, seed=3)
    for max_cells in (1, 37 * 5, 37 * 7 + 3, 10**9):
        chunked = paired_bootstrap_difference(a, b, doc_bytes, replicates=301, seed=3, max_cells=max_cells)
        assert chunked.low == pytest.approx(whole.low, rel=1e-12)
        assert chunked.high == pytest.approx(whole.high, rel=1e-12)
        assert chunked.estimate == whole.estimate


def test_level_changes_the_width() -> None:
    rng = np.random.default_rng(8)
    doc_bytes = rng.integers(100, 1000, size=60).astype(float)
    a = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.0, noise=0.5)
    b = noisy_losses(rng, doc_bytes, seeds=3, bpb=1.0, noise=0.5)
    wide = paired_bootstrap_difference(a, b, doc_bytes, level=0.99)
    narrow = paired_bootstrap_difference(a, b, doc_bytes, level=0.90)
    assert wide.level == 0.99 and narrow.level == 0.90
    assert wide.low < narrow.low and narrow.high < wide.high


def test_one_document_gives_no_interval() -> None:
    diff = paired_bootstrap_difference(np.array([2.0]), np.array([1.0]), np.array([1.0]))
    assert diff.estimate == pytest.approx(1.0 / LN2)
    assert math.isnan(diff.low) and math.isnan(diff.high)
    assert not diff.excludes_zero()


def test_zero_byte_documents_are_allowed() -> None:
    # Document 0 has no bytes; a replicate drawing it twice has no bits-per-byte and is skipped.
    diff = paired_bootstrap_difference(
        np.array([0.5, 3.0]), np.array([0.5, 2.0]), np.array([0.0, 5.0]), replicates=400
    )
    assert diff.estimate == pytest.approx(1.0 / (5 * LN2))
    assert "skipped" in diff.method
    assert math.isfinite(diff.low) and math.isfinite(diff.high)


@pytest.mark.parametrize(
    ("a", "b", "doc_bytes"),
    [
        (np.ones((2, 3)), np.ones((2, 4)), np.ones(3)),  # b covers other documents
        (np.ones((2, 3)), np.ones((2, 3)), np.ones(4)),  # bytes for other documents
        (np.ones((2, 3, 1)), np.ones((2, 3)), np.ones(3)),  # 3-D losses
        (np.ones((0, 3)), np.ones((2, 3)), np.ones(3)),  # no seeds
        (np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 1))),  # 2-D bytes
        (np.array([1.0, np.nan, 1.0]), np.ones(3), np.ones(3)),  # non-finite loss
        (np.ones(3), np.ones(3), np.zeros(3)),  # no bytes at all
        (np.ones(3), np.ones(3), np.array([2.0, -1.0, 1.0])),  # negative bytes
    ],
)
def test_bad_input_raises(a: np.ndarray, b: np.ndarray, doc_bytes: np.ndarray) -> None:
    with pytest.raises(ValueError):
        paired_bootstrap_difference(a, b, doc_bytes, replicates=10)


def test_bad_options_raise() -> None:
    ones = np.ones(3)
    with pytest.raises(ValueError):
        paired_bootstrap_difference(ones, ones, ones, replicates=0)
    with pytest.raises(ValueError):
        paired_bootstrap_difference(ones, ones, ones, level=1.5)


# --- verdict ------------------------------------------------------------------------------------


def test_verdict_indistinguishable() -> None:
    text = verdict("bpe", "unigram", Interval(0.001, -0.002, 0.004, 812, "bootstrap"))
    assert "indistinguishable" in text
    assert "95%" in text and "includes zero" in text
    assert "better" not in text


def test_verdict_names_a_when_a_is_lower() -> None:
    text = verdict("bpe", "unigram", Interval(-0.05, -0.07, -0.03, 812, "bootstrap"))
    assert text.startswith("bpe is better")
    assert "lower than unigram by 0.0500 bits/byte" in text
    assert "95% interval 0.0300 to 0.0700" in text


def test_verdict_names_b_when_b_is_lower() -> None:
    text = verdict("bpe", "unigram", Interval(0.05, 0.03, 0.07, 812, "bootstrap", level=0.90))
    assert text.startswith("unigram is better")
    assert "lower than bpe by 0.0500 bits/byte" in text
    assert "90% interval 0.0300 to 0.0700" in text


def test_verdict_without_an_interval() -> None:
    text = verdict("bpe", "unigram", mean_interval([0.02]))
    assert "cannot be told apart" in text
    assert "1 seed" in text
    assert "better" not in text and "indistinguishable" not in text
