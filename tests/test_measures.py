"""Each measure against a hand computation, and the FLOPs formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toklab.gpt.flops import REFERENCE_SHAPE, ModelShape, flops_per_token
from toklab.measures import TextStats, keep_rates, order0_bits, renyi_efficiency, segmentation_row


def test_order0_bits_by_hand():
    # counts 2,1,1 of 4 tokens: 2 x log2(2) + 2 x log2(4) = 2 + 4 bits
    assert order0_bits(np.array([2, 1, 1, 0])) == pytest.approx(6.0)
    assert order0_bits(np.array([5])) == 0.0
    assert order0_bits(np.zeros(3)) == 0.0


def test_renyi_efficiency_by_hand():
    # p = (1/2, 1/4, 1/4), V = 4, alpha = 2.5: H = log2(0.5^2.5 + 2 * 0.25^2.5) / (1 - 2.5), over log2 4 = 2
    expected = math.log2(0.5**2.5 + 2 * 0.25**2.5) / -1.5 / 2.0
    assert renyi_efficiency(np.array([2, 1, 1, 0]), 4) == pytest.approx(expected)
    # a uniform distribution over the whole vocabulary is perfectly efficient
    assert renyi_efficiency(np.ones(16), 16) == pytest.approx(1.0)


def test_keep_rates_boundary_is_kept():
    # doc 1: 3 tokens for 10 chars sits exactly at t * chars = 3 and is kept
    docs, n_bytes = keep_rates(np.array([3, 10]), np.array([10, 10]), np.array([10, 20]), 0.3)
    assert docs == 0.5 and n_bytes == pytest.approx(10 / 30)


def test_flops_per_token_by_hand():
    shape = ModelShape("tiny", n_layer=2, d_model=8, context=16)
    n = 2 * (4 * 64 + 8 * 64) + 100 * 8  # attention + MLP weights per layer, plus the V x d head
    assert shape.matmul_params(100) == n
    assert flops_per_token(shape, 100) == 6 * n + 12 * 2 * 16 * 8
    # a larger vocabulary costs more per token through the head alone
    assert flops_per_token(REFERENCE_SHAPE, 50257) - flops_per_token(REFERENCE_SHAPE, 257) == 6 * 50000 * 768


def test_segmentation_row_by_hand():
    texts = ["ab", "aab é"]  # bytes: 2 and 6 (é is 2 bytes); chars 2 and 5; words 1 and 2
    ids = [[97, 98], [97, 97, 98, 32, 195, 169]]
    stats = TextStats.of(texts)
    assert stats.bytes.tolist() == [2, 6] and stats.chars.tolist() == [2, 5] and stats.words.tolist() == [1, 2]
    row = segmentation_row(ids, stats, 257, threshold=0.3, shape=REFERENCE_SHAPE)
    assert row["tokens"] == 8
    assert row["tokens_per_char"] == pytest.approx(8 / 7)
    assert row["chars_per_token"] == pytest.approx(7 / 8)
    assert row["bytes_per_token"] == pytest.approx(8 / 8)
    assert row["tokens_per_word"] == pytest.approx(8 / 3)
    counts = {97: 3, 98: 2, 32: 1, 195: 1, 169: 1}
    bits = -sum(c * math.log2(c / 8) for c in counts.values())
    assert row["bits_per_byte"] == pytest.approx(bits / 8)
    p = np.array(list(counts.values())) / 8
    assert row["renyi_efficiency"] == pytest.approx(math.log2((p**2.5).sum()) / -1.5 / math.log2(257))
    assert row["vocab_utilisation"] == pytest.approx(5 / 257)
    assert row["keep_rate_docs"] == 0.0 and row["keep_rate_bytes"] == 0.0  # 2 > 0.6 and 6 > 1.5
    assert row["train_flops_per_mb"] == pytest.approx(flops_per_token(REFERENCE_SHAPE, 257) * (8 / 8) * 1e6)
    kept = segmentation_row(ids, stats, 257, threshold=1.2, shape=REFERENCE_SHAPE)  # 2 <= 2.4, 6 <= 6.0
    assert kept["keep_rate_docs"] == 1.0 and kept["keep_rate_bytes"] == 1.0
