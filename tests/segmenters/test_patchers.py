"""Flagged bytes for a BLT-style model (toklab/segmenters/patchers.py): the patchers' boundaries by
hand, causality, document isolation, the entropy patcher against the entropy segmenter, saving."""

from __future__ import annotations

import json

import numpy as np
import pytest

import toklab
from toklab import ToklabError
from toklab.segmenters import get_segmenter
from toklab.segmenters.base import MANIFEST
from toklab.segmenters.patchers import (
    EntropyPatcher,
    PatchedBytes,
    SpacePatcher,
    StaticPatcher,
    load_patched,
    load_patcher,
    patcher_spec_of_row,
)
from toklab.segmenters.patching import cap_lengths


def at(starts: np.ndarray) -> list[int]:
    return np.flatnonzero(starts).tolist()


@pytest.fixture(scope="module")
def udhr(shared_corpora) -> list[str]:
    return [d.text for d in toklab.open_corpus(str(shared_corpora / "udhr"))]


@pytest.fixture(scope="module")
def sotu(shared_corpora):
    """A small real corpus to train the entropy and BPE segmenters on (about a second each)."""
    return toklab.open_corpus(str(shared_corpora / "sotu"), max_bytes=1_000_000)


@pytest.fixture(scope="module")
def held_out(sotu) -> list[str]:
    texts = [d.text for d in sotu.val()]
    assert sum(len(t) for t in texts) > 20_000
    return texts


@pytest.fixture(scope="module")
def entropy(sotu) -> PatchedBytes:
    return load_patcher("entropy:1k,target=4.5", sotu)


@pytest.fixture(scope="module")
def bpe(sotu) -> PatchedBytes:
    return load_patcher("bpe:1k", sotu)


# --- static ---------------------------------------------------------------------------------------


def test_static_flags_by_hand():
    # floor(t / 2.5) for t = 0..9: 0 0 0 1 1 2 2 2 3 3 -> starts at 0, 3, 5, 8
    assert StaticPatcher(2.5).starts(b"0123456789").tolist() == [True, False, False, True, False, True, False, False, True, False]
    # floor(t / 4.5): 0 0 0 0 0 1 1 1 1 2 2 2 2 2 3 -> starts at 0, 5, 9, 14
    assert at(StaticPatcher(4.5).starts(b"x" * 15)) == [0, 5, 9, 14]
    assert StaticPatcher(1).starts(b"abc").tolist() == [True, True, True]
    assert StaticPatcher(2.5).starts(b"").tolist() == []
    assert StaticPatcher(2.5).max_len == 3 and StaticPatcher(4).max_len == 4


def test_encode_ids_by_hand():
    seg = load_patcher("static:size=2")
    # "ab c" = 97 98 32 99; starts at 0 and 2 carry +257
    assert seg.encode("ab c") == [97 + 257, 98, 32 + 257, 99] == [354, 98, 289, 99]
    space = load_patcher("space")
    # "hi  there, you": patches "hi", "  there", ", you"
    assert space.encode("hi  there, you") == [104 + 257, 105, 32 + 257, 32, 116, 104, 101, 114, 101, 44 + 257, 32, 121, 111, 117]
    assert seg.vocab_size == 514 and seg.special_tokens == {"<|endoftext|>": 513}
    lengths = seg.token_byte_lengths()
    assert lengths[513] == 0 and lengths[:256].tolist() == [1] * 256 and lengths[257:513].tolist() == [1] * 256
    assert seg.decode([354, 98, 513, 289, 99]) == "ab c"  # end-of-text stands for no bytes
    assert seg.token_bytes(354) == b"a" and seg.token_bytes(98) == b"b" and seg.token_bytes(513) == b""


@pytest.mark.parametrize("spec", ["static:size=4.5", "static:size=1", "space", "space:max_len=3"])
def test_decode_round_trip_on_every_udhr_language(udhr, spec):
    seg = load_patcher(spec)
    ids = seg.encode_batch(udhr)
    assert all(seg.decode(i) == t for i, t in zip(ids, udhr))
    assert all(np.array_equal(np.asarray(i) % 257, np.frombuffer(t.encode(), dtype=np.uint8)) for i, t in zip(ids, udhr))


# --- space ----------------------------------------------------------------------------------------


def test_space_starts_by_hand():
    p = SpacePatcher()
    assert at(p.starts(b"hi  there, you")) == [0, 2, 9]
    # Cyrillic letters are 2 bytes each: "Привет" 0-11, "," 12, " " 13, "мир" 14-19
    assert at(p.starts("Привет, мир".encode())) == [0, 12]
    # a lead byte after a space is a letter, not a space; "é" is 2 bytes (2, 3)
    assert at(p.starts("a éb.".encode())) == [0, 1, 5]
    assert at(p.starts(b"  x")) == [0]  # leading spaces: one patch with the word after them
    assert at(p.starts(b"")) == []


def test_space_max_len_by_hand():
    assert at(SpacePatcher(4).starts(b"abcdefghij klm")) == [0, 4, 8, 10]
    # 2-byte characters, max_len 5: two characters (4 bytes) per patch, never a cut inside one
    assert at(SpacePatcher(5).starts("ПриветПривет".encode())) == [0, 4, 8, 12, 16, 20]
    # a 4-byte character longer than max_len 2 is a patch of its own
    assert at(SpacePatcher(2).starts("a😀b".encode())) == [0, 1, 5]


@pytest.mark.parametrize("max_len", [16, 5, 2])
def test_space_cap_on_real_text_agrees_with_patching_cap(udhr, max_len):
    """On valid UTF-8 the causal cap cuts where patching.cap_lengths does (an independent
    implementation that looks at where each patch ends); no patch is longer than max_len
    (but for a single longer character) and none starts inside a character."""
    p, plain = SpacePatcher(max_len), SpacePatcher(10**6)
    for text in udhr:
        data = text.encode()
        x = np.frombuffer(data, dtype=np.uint8)
        starts = p.starts(data)
        assert np.array_equal(starts, cap_lengths(plain.starts(data), x, max_len, False))
        assert not starts[(x & 0xC0) == 0x80].any()
        lengths = np.diff(np.append(np.flatnonzero(starts), len(data)))
        assert lengths.max() <= max(max_len, 4)
        if max_len >= 4:
            assert lengths.max() <= max_len


# --- causality and isolation ----------------------------------------------------------------------


def prefix_mismatches(patcher, data: bytes, ks) -> list[int]:
    full = patcher.starts(data)
    return [k for k in ks if not np.array_equal(patcher.starts(data[:k]), full[:k])]


@pytest.mark.parametrize("patcher", [StaticPatcher(4.5), StaticPatcher(3.7), SpacePatcher(), SpacePatcher(5), SpacePatcher(3)], ids=lambda p: p.describe())
def test_flags_are_causal(udhr, patcher):
    """The flags of every prefix (cut at any byte, inside characters too) are those of the whole
    document, and changing byte j onwards changes no flag before j."""
    rng = np.random.default_rng(0)
    scripts = [(0x41, 0x7A), (0x400, 0x4FF), (0x4E00, 0x9FFF)]  # Latin, Cyrillic, CJK
    docs = [next(t for t in udhr if sum(lo <= ord(c) <= hi for c in t) > len(t) // 2).encode()[:1500] for lo, hi in scripts]
    for data in docs:
        assert patcher.causal
        assert prefix_mismatches(patcher, data, range(len(data) + 1)) == []
        full = patcher.starts(data)
        for j in rng.integers(0, len(data), 20):
            changed = data[:j] + rng.integers(0, 256, len(data) - j, dtype=np.uint8).tobytes()
            assert np.array_equal(patcher.starts(changed)[:j], full[:j])


@pytest.mark.parametrize("max_len, theta", [(None, None), (3, None), (6, None), (5, float("inf"))])
def test_entropy_flags_are_causal(entropy, held_out, udhr, max_len, theta):
    """With a length cap too: the entropy segmenter's own cap looks one character ahead, the
    patcher's does not, and on whole documents both cut the same (theta=inf: the cap makes every cut)."""
    import copy

    seg = copy.copy(entropy.patcher.segmenter)
    seg.max_len = max_len
    seg.theta = seg.theta if theta is None else theta
    capped = EntropyPatcher(seg)
    assert entropy.causal and isinstance(capped, EntropyPatcher)
    scripts = [(0x400, 0x4FF), (0x4E00, 0x9FFF)]  # Cyrillic, CJK: characters of 2 and 3 bytes
    others = [next(t for t in udhr if sum(lo <= ord(c) <= hi for c in t) > len(t) // 2) for lo, hi in scripts]
    for data in [held_out[0].encode()[:600]] + [t.encode()[:600] for t in others]:
        assert prefix_mismatches(capped, data, range(len(data) + 1)) == []
        full = capped.starts(data)
        whole = data.decode("utf-8", errors="ignore").encode()  # whole characters: there both caps agree
        assert np.array_equal(capped.starts(whole), capped.segmenter._starts(capped.segmenter._scores([whole])[0][0], whole))
        if max_len:
            assert np.diff(np.append(np.flatnonzero(full), len(data))).max() <= max_len
        for j in (1, 57, 300, 599):
            changed = data[:j] + b"zq#\xc3\xa9" * 40
            assert np.array_equal(capped.starts(changed)[:j], full[:j])


def test_bpe_patcher_is_not_causal(bpe, held_out):
    assert bpe.causal is False and bpe.patcher.causal is False and "not causal" in bpe.describe()
    # and it really is not: some prefix of real text is cut differently from the whole
    data = held_out[0].encode()[:400]
    assert prefix_mismatches(bpe.patcher, data, range(1, len(data) + 1))


@pytest.mark.parametrize("which", ["static:size=4.5", "space", "entropy", "bpe"])
def test_documents_are_patched_alone(which, entropy, bpe, udhr, held_out):
    seg = {"entropy": entropy, "bpe": bpe}.get(which) or load_patcher(which)
    docs = held_out[:5] + udhr[:40] + ["x", " ", "é"]
    batch = seg.encode_batch(docs)
    assert batch == [seg.encode(d) for d in docs]
    assert all(ids[0] >= 257 for ids in batch)  # the first byte of every document starts a patch
    assert seg.encode("") == []


# --- the entropy patcher --------------------------------------------------------------------------


def test_entropy_patches_hit_the_target_on_held_out_text(entropy, held_out):
    stats = entropy.patch_stats(held_out)
    assert 3.5 <= stats["bytes_per_patch"] <= 5.5, stats  # calibrated on train text to 4.5
    assert stats["causal"] is True


def test_entropy_flags_are_the_entropy_segmenters_patches(entropy, held_out):
    inner = entropy.patcher.segmenter
    for text, ids in zip(held_out, entropy.encode_batch(held_out)):
        lengths = [len(p) for p in inner.patches(text)]
        expected = np.zeros(len(text.encode()), dtype=bool)
        expected[np.cumsum([0] + lengths[:-1])] = True
        assert np.array_equal(np.asarray(ids) >= 257, expected)


def test_entropy_flops_per_byte():
    class Model:
        kind = "transformer"
        params = {"n_layer": 2, "d_model": 128, "context": 256}

    class Seg:
        model, max_len = Model(), None

    # per layer 12 d^2 = 196,608 weights; 2 layers + 256 x 128 head = 425,984; forward 2 N + 4 L T d
    assert EntropyPatcher(Seg()).entropy_flops_per_byte == 2 * 425_984 + 4 * 2 * 256 * 128 == 1_114_112
    Model.kind = "ngram"
    assert EntropyPatcher(Seg()).entropy_flops_per_byte == 0.0
    assert load_patcher("static").entropy_flops_per_byte is None and load_patcher("space").entropy_flops_per_byte is None


# --- stats, specs, saving -------------------------------------------------------------------------


def test_patch_stats_by_hand():
    seg = load_patcher("static:size=2.5")
    # "0123456789" -> 3 2 3 2; "abc" -> 3 (0, then floor(3/2.5) = 1 only at t = 3)
    stats = seg.patch_stats(["0123456789", "abc"])
    assert stats["patches"] == 5 and stats["bytes"] == 13
    assert stats["bytes_per_patch"] == pytest.approx(13 / 5)
    assert stats["median_patch_bytes"] == 3 and stats["max_patch_bytes"] == 3
    assert stats["p90_patch_bytes"] == pytest.approx(3.0)
    assert "static 2.5" in seg.describe() and seg.label == seg.describe()


def test_row_names_and_specs():
    assert patcher_spec_of_row("blt:entropy,target=4.5") == "entropy:target=4.5"
    assert patcher_spec_of_row("blt:static,size=4.5") == "static:size=4.5"
    assert patcher_spec_of_row("blt:space") == "space"
    assert patcher_spec_of_row("blt:bpe:4k") == "bpe:4k"
    assert patcher_spec_of_row("blt:entropy:4k,target=4") == "entropy:4k,target=4"
    assert load_patcher("blt:static,size=2.5").encode("0123456789") == load_patcher("static:size=2.5").encode("0123456789")
    assert load_patcher("static").params["size"] == 4.5 and load_patcher("space").max_len == 16
    assert load_patcher("space:max_len=8").max_len == 8
    with pytest.raises(ToklabError, match="unknown segmenter kind"):  # patches are no registry kind
        get_segmenter("patches:static,size=2.5")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("static:size=0", "size=0"),
        ("static:size=x", "size=x"),
        ("static:4", "no argument"),
        ("space:max_len=x", "max_len=x"),
        ("space:max_len=0", "max_len=0"),
        ("space:width=3", "unknown space patcher option"),
        ("blt:", "names no patcher"),
        ("", "patcher spec"),
        ("nosuch:1k", "unknown segmenter kind"),
        ("entropy:target=0.5", "target"),
        ("patches:space", "patches"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(ToklabError, match=message) as info:
        load_patcher(spec)
    assert "\n" not in str(info.value)
    with pytest.raises(ToklabError):
        patcher_spec_of_row("blt:")


@pytest.mark.parametrize("which", ["static:size=3.5", "space:max_len=8", "entropy", "bpe"])
def test_save_and_load_give_identical_ids(which, entropy, bpe, held_out, udhr, tmp_path):
    seg = {"entropy": entropy, "bpe": bpe}.get(which) or load_patcher(which)
    seg.save(tmp_path / "seg")
    manifest = json.loads((tmp_path / "seg" / MANIFEST).read_text())
    assert manifest["kind"] == "patches" and manifest["vocab_size"] == 514
    assert manifest["params"]["patcher_spec"] == seg.patcher_spec and manifest["spec"] == seg.spec
    loaded = load_patched(tmp_path / "seg")
    assert isinstance(loaded, PatchedBytes) and loaded.spec == seg.spec and loaded.causal == seg.causal
    texts = held_out[:3] + udhr[:20]
    assert loaded.encode_batch(texts) == seg.encode_batch(texts)
    assert loaded.patch_stats(texts) == seg.patch_stats(texts)


def test_a_damaged_save_is_a_one_line_error(tmp_path):
    load_patcher("static:size=3").save(tmp_path / "seg")
    path = tmp_path / "seg" / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["params"]["patcher"] = "wobbly"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ToklabError) as info:
        load_patched(tmp_path / "seg")
    assert "\n" not in str(info.value)
