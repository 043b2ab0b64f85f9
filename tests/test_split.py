"""The train/val split and sampling: deterministic, id-only, monotonic."""

from __future__ import annotations

import hashlib

import pytest

from toklab import Document, split_of
from toklab.corpus import in_sample
from toklab.corpus.document import unit_hash

IDS = [f"doc-{i}" for i in range(20_000)]


def test_unit_hash_matches_a_hand_computation():
    digest = hashlib.blake2b(b"toklab-split\x00abc", digest_size=8).digest()
    assert unit_hash("abc", "toklab-split") == int.from_bytes(digest, "big") / 2**64


def test_split_depends_on_the_id_alone():
    first = {i: split_of(i, 0.1) for i in IDS}
    shuffled = list(reversed(IDS[::3]))  # other order, other neighbours
    assert all(split_of(i, 0.1) == first[i] for i in shuffled)


def test_val_share_is_close_to_the_fraction():
    share = sum(split_of(i, 0.1) == "val" for i in IDS) / len(IDS)
    assert share == pytest.approx(0.1, abs=0.01)  # binomial sd is 0.002 here


def test_raising_the_fraction_only_moves_train_to_val():
    small = {i for i in IDS if split_of(i, 0.05) == "val"}
    large = {i for i in IDS if split_of(i, 0.2) == "val"}
    assert small < large


def test_zero_fraction_puts_everything_in_train():
    assert {split_of(i, 0.0) for i in IDS[:500]} == {"train"}


def test_sampling_is_deterministic_and_independent_of_the_split():
    kept = [i for i in IDS if in_sample(i, 0.25, seed=1)]
    assert kept == [i for i in IDS if in_sample(i, 0.25, seed=1)]
    assert len(kept) / len(IDS) == pytest.approx(0.25, abs=0.02)
    other_seed = {i for i in IDS if in_sample(i, 0.25, seed=2)}
    assert set(kept) != other_seed
    # the sample is not biased towards one split
    val_share = sum(split_of(i, 0.1) == "val" for i in kept) / len(kept)
    assert val_share == pytest.approx(0.1, abs=0.02)


def test_document_record_and_bytes():
    doc = Document(id="a", text="héllo €", source="prose", meta={"url": "u"})
    assert doc.n_bytes == len("héllo €".encode()) == 10
    assert doc.to_record() == {"id": "a", "text": "héllo €", "source": "prose", "url": "u"}
