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


# Fixed expectations, written out once by hand (blake2b, 8-byte digest, of "<salt>\0<id>" as a
# big-endian integer / 2**64, against the fraction) so that a change to the hash, its salt
# ("toklab-split", "sample<seed>") or the comparison re-splits these ids and fails here, which
# tests that compute their expectation with split_of / in_sample themselves cannot notice.
# id: (hash with salt "toklab-split" to 4 places, split at val_fraction 0.1, split at 0.5)
PINNED_SPLITS = {
    "doc-0": (0.4730, "train", "val"),
    "doc-1": (0.9129, "train", "train"),
    "doc-2": (0.0001, "val", "val"),
    "doc-3": (0.0509, "val", "val"),
    "doc-4": (0.3189, "train", "val"),
    "doc-5": (0.1875, "train", "val"),
    "doc-6": (0.0888, "val", "val"),
    "doc-7": (0.8500, "train", "train"),
    "doc-8": (0.5053, "train", "train"),
    "doc-9": (0.1077, "train", "val"),
    "doc-10": (0.1733, "train", "val"),
    "doc-11": (0.9051, "train", "train"),
    "café": (0.6613, "train", "train"),
    "漢字": (0.2360, "train", "val"),
}
# id: (in the sample at fraction 0.3 with seed 0, at fraction 0.5 with seed 1)
PINNED_SAMPLES = {
    "doc-0": (False, True),
    "doc-1": (False, True),
    "doc-2": (False, False),
    "doc-3": (True, True),
    "doc-4": (False, True),
    "doc-5": (True, False),
    "doc-6": (False, True),
    "doc-7": (False, True),
    "doc-8": (False, False),
    "doc-9": (False, True),
    "doc-10": (False, False),
    "doc-11": (True, True),
    "café": (False, False),
    "漢字": (False, True),
}


def _documented_hash(key: str, salt: str) -> float:
    """The rule in toklab/corpus/document.py, rewritten here with hashlib alone."""
    return int.from_bytes(hashlib.blake2b(f"{salt}\0{key}".encode("utf-8"), digest_size=8).digest(), "big") / 2**64


def test_split_of_fixed_ids_is_pinned():
    for doc_id, (value, at_01, at_05) in PINNED_SPLITS.items():
        assert _documented_hash(doc_id, "toklab-split") == pytest.approx(value, abs=5e-5), doc_id
        assert (split_of(doc_id, 0.1), split_of(doc_id, 0.5)) == (at_01, at_05), doc_id
    assert sorted(i for i, (_, s, _) in PINNED_SPLITS.items() if s == "val") == ["doc-2", "doc-3", "doc-6"]


def test_split_of_follows_the_documented_hash():
    for doc_id in IDS[:3000] + list(PINNED_SPLITS):
        expected = "val" if _documented_hash(doc_id, "toklab-split") < 0.1 else "train"
        assert split_of(doc_id, 0.1) == expected, doc_id


def test_corpus_splits_fixed_ids_as_pinned(tmp_path):
    import json

    import toklab

    path = tmp_path / "pinned.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"text of {i}"}, ensure_ascii=False) + "\n" for i in PINNED_SPLITS), encoding="utf-8")
    for fraction, column in ((0.1, 1), (0.5, 2)):
        corpus = toklab.open_corpus(str(path), val_fraction=fraction)
        assert [d.id for d in corpus.val()] == [i for i, row in PINNED_SPLITS.items() if row[column] == "val"]
        assert [d.id for d in corpus.train()] == [i for i, row in PINNED_SPLITS.items() if row[column] == "train"]


def test_in_sample_of_fixed_ids_is_pinned():
    for doc_id, (seed0_03, seed1_05) in PINNED_SAMPLES.items():
        assert (in_sample(doc_id, 0.3, seed=0), in_sample(doc_id, 0.5, seed=1)) == (seed0_03, seed1_05), doc_id
    for doc_id in IDS[:3000]:
        assert in_sample(doc_id, 0.3, seed=0) == (_documented_hash(doc_id, "sample0") < 0.3), doc_id
        assert in_sample(doc_id, 0.5, seed=1) == (_documented_hash(doc_id, "sample1") < 0.5), doc_id


def test_corpus_sample_keeps_the_pinned_ids(tmp_path):
    import json

    import toklab

    path = tmp_path / "pinned.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"text of {i}"}, ensure_ascii=False) + "\n" for i in PINNED_SAMPLES), encoding="utf-8")
    kept = [d.id for d in toklab.open_corpus(str(path), sample=0.3, seed=0)]
    assert kept == ["doc-3", "doc-5", "doc-11"]
    kept = [d.id for d in toklab.open_corpus(str(path), sample=0.5, seed=1)]
    assert kept == [i for i, (_, s) in PINNED_SAMPLES.items() if s]
