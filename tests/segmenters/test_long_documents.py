"""Long documents: the kinds that can be cut encode them in exact pieces, and compare, filter and
pretrain's shard writing count and write their ids piece by piece. Every expected value comes
from the library called on the whole text (tiktoken, tokenizers, str.encode), never from toklab's
cutting."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import toklab
import toklab.segmenters.base as base
from conftest import long_corpus  # a jsonl corpus holding one long document
from toklab import split_of
from toklab.gpt.data import build_token_data, read_shard
from toklab.segmenters import get_segmenter
from toklab.segmenters.base import CUT_ANYWHERE, CUT_NEWLINE, CUT_SPACE, CUT_STREAM, Segmenter, newline_cuts, space_cuts
from toklab.segmenters.bpe import PATTERNS, BPESegmenter, _hf_tokenizer

CUT = 50_000  # CUT_CHARS under the small_cut fixture (tests/conftest.py, with long_text)
TIKTOKEN_NAMES = ("gpt2", "cl100k_base", "o200k_base")


@pytest.fixture(scope="module")
def small_bpe(long_text) -> BPESegmenter:
    return BPESegmenter.train([long_text[:300_000]], 600)


def tiktoken_whole(name: str):
    import tiktoken

    return tiktoken.get_encoding(name).encode_ordinary


def edge_text(seed: int, n: int = 40_000) -> str:
    """Random text full of the cases around the cut rule: CRLF, blank lines, spaces next to
    newlines, punctuation runs into newlines and "/" (o200k's `[\\r\\n/]*`)."""
    rng = random.Random(seed)
    pieces = ["\n", "\n\n", "\r\n", "\r", " ", "  ", "\t", "a", "Word", "123", "!", ".\n", " \n", "\n ", "é", "中", "'s", "/", "!\n/", "x\n/y", "\n'", "\u00a0", "\u2028"]
    return "".join(rng.choice(pieces) for _ in range(n))


def ids_of_chunks(segmenter: Segmenter, text: str, size: int | None = None) -> list[int]:
    return [int(i) for chunk in segmenter.encode_chunks(text, size) for i in chunk]


# --- the cut rule --------------------------------------------------------------------------------


def test_newline_cuts_join_to_the_text_and_cut_only_after_a_lone_newline(long_text):
    pieces = list(newline_cuts(long_text, CUT))
    assert "".join(pieces) == long_text and len(pieces) > 10
    for left, right in zip(pieces, pieces[1:]):
        assert left.endswith("\n") and not left[-2].isspace() and not right[0].isspace() and right[0] != "/"
    assert max(map(len, pieces)) <= 3 * CUT  # real text has a safe newline in every window here


@pytest.mark.parametrize("text", ["no newline at all " * 2000, "a\n\nb " * 2000, "x \ny " * 2000, "p\n/q" * 2000, "\r\n".join(["line"] * 2000)], ids=["no-newline", "blank-lines", "space-before", "slash-after", "crlf"])
def test_a_text_with_no_safe_newline_is_one_piece(text, small_cut):
    seg = get_segmenter("tiktoken:cl100k_base")
    assert list(newline_cuts(text, 100)) == [text]
    assert list(seg.exact_cuts(text, 100)) == [text]
    chunks = list(seg.encode_chunks(text, 100))
    assert len(chunks) == 1 and chunks[0].tolist() == tiktoken_whole("cl100k_base")(text)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_pattern_pre_tokenises_the_pieces_as_the_whole(seed):
    """tokenizers' own pre-tokeniser, for each of bpe's patterns: the words of the pieces are
    the words of the whole text (the pieces of a random text full of edge cases)."""
    text = edge_text(seed)
    pieces = list(newline_cuts(text, 300))
    assert "".join(pieces) == text and len(pieces) > 20
    for name, pattern in PATTERNS.items():
        pre = _hf_tokenizer(pattern).pre_tokenizer
        whole = [w for w, _ in pre.pre_tokenize_str(text)]
        assert [w for p in pieces for w, _ in pre.pre_tokenize_str(p)] == whole, name


@pytest.mark.parametrize("name", TIKTOKEN_NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_tiktoken_ids_of_edge_case_pieces_equal_the_whole(name, seed, shared_tiktoken):
    seg = get_segmenter(f"tiktoken:{name}")
    assert seg.cut_rule == CUT_NEWLINE
    text = edge_text(seed)
    assert len(list(seg.exact_cuts(text, 300))) > 20
    assert ids_of_chunks(seg, text, 300) == tiktoken_whole(name)(text)


# --- the cuttable kinds on a long real text ------------------------------------------------------


def test_bytes_cuts_anywhere_and_its_ids_are_the_utf8_bytes(long_text, small_cut):
    seg = get_segmenter("bytes")
    assert seg.cut_rule == CUT_ANYWHERE
    text = long_text + "é中\U0001f600" * 1000  # multi-byte characters across the cuts
    expected = list(text.encode("utf-8"))
    assert len(list(seg.exact_cuts(text))) == -(-len(text) // CUT)
    assert ids_of_chunks(seg, text) == expected
    assert seg.encode(text) == expected and seg.encode_batch(["ab", text, ""]) == [[97, 98], expected, []]
    assert seg.count_tokens(["ab", text, ""]).tolist() == [2, len(expected), 0]


@pytest.mark.parametrize("name", TIKTOKEN_NAMES)
def test_tiktoken_long_text_ids_equal_tiktoken_on_the_whole(name, long_text, small_cut, shared_tiktoken):
    seg = get_segmenter(f"tiktoken:{name}")
    expected = tiktoken_whole(name)(long_text)
    assert len(list(seg.exact_cuts(long_text))) > 10
    assert ids_of_chunks(seg, long_text) == expected
    assert seg.encode(long_text) == expected
    short = "a short text\n"
    out = seg.encode_batch([short, long_text, short], workers=2)
    assert out == [tiktoken_whole(name)(short), expected, tiktoken_whole(name)(short)]
    assert seg.count_tokens([short, long_text]).tolist() == [len(out[0]), len(expected)]


@pytest.mark.parametrize("fast", [True, False])
def test_bpe_long_text_ids_equal_tokenizers_on_the_whole(fast, small_bpe, long_text, small_cut):
    seg = small_bpe if fast else BPESegmenter(small_bpe._tokenizer_json, small_bpe.pattern_name, fast=False)
    assert seg.fast_path == fast and seg.cut_rule == CUT_NEWLINE
    expected = seg._hf.encode(long_text, add_special_tokens=False).ids  # tokenizers itself, whole
    assert ids_of_chunks(seg, long_text) == expected
    assert seg.encode(long_text) == expected
    assert seg.encode_batch(["x", long_text]) == [seg._hf.encode("x", add_special_tokens=False).ids, expected]


def hf_variant(small_bpe, tmp_path, change=None):
    """bpe's tokenizer.json (a Split by its pattern, then ByteLevel), changed, loaded as an `hf` segmenter."""
    config = json.loads(small_bpe._tokenizer_json)
    if change:
        change(config)
    path = tmp_path / f"tokenizer-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(config))
    return get_segmenter(f"hf:{path}"), config


def test_hf_long_text_ids_equal_tokenizers_on_the_whole(small_bpe, long_text, tmp_path, small_cut):
    from tokenizers import Tokenizer

    def gpt2_byte_level(config):  # ByteLevel's own regex (GPT-2's) instead of a Split
        config["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}

    for change in (None, gpt2_byte_level):
        seg, config = hf_variant(small_bpe, tmp_path, change)
        assert seg.cut_rule == CUT_NEWLINE
        expected = Tokenizer.from_str(json.dumps(config)).encode(long_text, add_special_tokens=False).ids
        assert len(list(seg.exact_cuts(long_text))) > 10
        assert ids_of_chunks(seg, long_text) == expected
        assert seg.encode(long_text) == expected
        assert seg.encode_batch(["x", long_text])[1] == expected


def test_hf_tokenizers_a_cut_could_change_are_encoded_whole(small_bpe, tmp_path, small_cut):
    def set_in(path, value):
        def change(config):
            target = config
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return change

    def added(content, **flags):
        return lambda config: config["added_tokens"].append({"id": 5000, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False, **flags})

    unsafe = {
        "normaliser": set_in(["normalizer"], {"type": "Lowercase"}),
        "prefix space": set_in(["pre_tokenizer", "pretokenizers", 1, "add_prefix_space"], True),
        "another pattern": set_in(["pre_tokenizer", "pretokenizers", 0, "pattern"], {"Regex": r"\S+\s*"}),
        "added token with a newline": added("a\nb"),
        "added token that strips": added("zzz", lstrip=True),
    }
    for name, change in unsafe.items():
        seg, _ = hf_variant(small_bpe, tmp_path, change)
        assert seg.cut_rule is None, name
    assert hf_variant(small_bpe, tmp_path, added("zzz"))[0].cut_rule == CUT_NEWLINE
    # a Whitespace pre-tokeniser cuts before spaces instead (tests/segmenters/test_long_pretrained.py)
    assert hf_variant(small_bpe, tmp_path, set_in(["pre_tokenizer"], {"type": "Whitespace"}))[0].cut_rule == CUT_SPACE


def test_kinds_whose_ids_a_cut_could_change_are_encoded_whole(small_cut):
    assert Segmenter.cut_rule is None

    class Whole(Segmenter):
        kind = "whole-test"

        def encode(self, text):
            return [len(text)]

    text = "line one\nline two\n" * 10_000
    assert list(Whole().exact_cuts(text, 10)) == [text]
    assert [c.tolist() for c in Whole().encode_chunks(text, 10)] == [[len(text)]]
    assert [(i, p == t, list(ids)) for (i, p, ids), t in zip(Whole().encode_pieces(["ab", text]), ["ab", text])] == [(0, True, [2]), (1, True, [len(text)])]


# --- sentencepiece: cut before a space that follows a non-space -----------------------------------


def test_space_cuts_by_hand():
    assert list(space_cuts("aa bb  cc dd", 4)) == ["aa", " bb", "  cc", " dd"]
    assert list(space_cuts("  aaaa", 2)) == ["  aaaa"]  # the only spaces follow a space or start the text
    assert list(space_cuts("abcdefgh ij", 3)) == ["abcdefgh", " ij"]  # no space in the window: the next one


def test_space_cuts_join_to_the_text_and_cut_only_before_a_space_after_a_non_space(long_text):
    pieces = list(space_cuts(long_text, CUT))
    assert "".join(pieces) == long_text and len(pieces) > 20
    for before, after in zip(pieces, pieces[1:]):
        assert after[0] == " " and before[-1] != " "


def train_sentencepiece(kind: str, text: str, tmp_path_factory, **extra) -> Path:
    """A SentencePiece model trained by the library directly with toklab's lossless settings."""
    import sentencepiece as spm

    prefix = tmp_path_factory.mktemp(kind) / "m"
    lines = [line for line in text.splitlines() if line.strip()]
    settings = dict(model_type=kind, vocab_size=2000, byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
                    remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, split_digits=True, character_coverage=0.9995,
                    minloglevel=2, num_threads=1, bos_id=-1, eos_id=-1)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(prefix), **{**settings, **extra})
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def spm_models(long_text, tmp_path_factory) -> dict[str, Path]:
    return {kind: train_sentencepiece(kind, long_text[:300_000], tmp_path_factory) for kind in ("bpe", "unigram")}


def piece_score(seg, ids) -> float:
    """A unigram path's score: the sum of its pieces' log probabilities, in float64."""
    return sum(float(seg._sp.get_score(int(i))) for i in ids)


def test_spm_bpe_long_text_ids_equal_sentencepiece_on_the_whole(spm_models, long_text, small_cut):
    import sentencepiece as spm

    seg = get_segmenter(f"spm:{spm_models['bpe']}")
    assert seg.lossless and seg.cut_rule == CUT_SPACE
    expected = spm.SentencePieceProcessor(model_file=str(spm_models["bpe"])).encode(long_text, out_type=int)
    assert len(list(seg.exact_cuts(long_text))) > 20
    assert ids_of_chunks(seg, long_text) == expected
    assert seg.encode(long_text) == expected
    assert seg.encode_batch(["x y", long_text]) == [seg._sp.encode("x y", out_type=int), expected]
    assert seg.count_tokens([long_text]).tolist() == [len(expected)]


def test_unigram_pieces_are_an_optimal_path_of_the_whole(spm_models, long_text, small_cut):
    """Unigram's Viterbi has exact ties (e.g. three spaces as "▁▁"+"▁" or "▁"+"▁▁") that the library
    breaks by float32 rounding of the running score, which depends on where the text starts; and on
    a long text that running score loses precision. So the pieces' ids are not always the whole
    text's, but their path scores as well: equal to the whole's on short texts (to float32
    precision) and never worse on a long one."""
    import sentencepiece as spm

    seg = get_segmenter(f"spm:{spm_models['unigram']}")
    assert seg.lossless and seg.cut_rule == CUT_SPACE
    whole = spm.SentencePieceProcessor(model_file=str(spm_models["unigram"]))
    for start in range(0, 200_000, 5_000):
        text = long_text[start : start + 5_000]
        ids, expected = ids_of_chunks(seg, text, 200), whole.encode(text, out_type=int)
        assert seg.decode(ids) == text
        assert piece_score(seg, ids) == pytest.approx(piece_score(seg, expected), abs=1e-3)
    ids, expected = ids_of_chunks(seg, long_text), whole.encode(long_text, out_type=int)
    assert seg.decode(ids) == long_text
    assert piece_score(seg, ids) >= piece_score(seg, expected) - 1e-3
    assert abs(len(ids) - len(expected)) <= len(expected) * 1e-4


def test_sentencepiece_with_pieces_across_words_is_encoded_whole(long_text, tmp_path_factory, small_cut):
    model = train_sentencepiece("unigram", long_text[:100_000], tmp_path_factory, split_by_whitespace=False)
    seg = get_segmenter(f"spm:{model}")
    assert seg.lossless and seg.cut_rule is None  # e.g. a piece "e▁" crosses the place space_cuts would cut
    assert list(seg.exact_cuts(long_text)) == [long_text]


# --- entropy patches: pieces that carry the n-gram context across ----------------------------------


@pytest.fixture(scope="module")
def entropy_models(long_text):
    from toklab.segmenters.entropy import EntropySegmenter

    train = long_text[:400_000]
    return {order: EntropySegmenter.train([train], 1000, order=str(order), target="3") for order in (2, 4, 6)}


def entropy_variant(seg, **changes):
    """The same model and vocabulary with other patching settings."""
    from toklab.segmenters.entropy import EntropySegmenter

    settings = dict(theta=seg.theta, rule=seg.rule, relative=seg.relative, max_len=seg.max_len, split_utf8=seg.split_utf8)
    settings.update(changes)
    theta = settings.pop("theta")
    rule = settings.pop("rule")
    return EntropySegmenter(seg.model, theta, rule, list(seg._pieces[256:-1]), **settings)


ENTROPY_CASES = [
    (4, {}),
    (2, {}),  # one byte of context
    (6, {}),  # contexts made distinct with np.unique (no lookup table)
    (4, {"max_len": 3}),  # the cap cuts inside most patches
    (4, {"max_len": 5, "split_utf8": True}),
    (4, {"rule": "monotonic", "theta": 0.2}),  # compares with the previous byte's entropy
    (4, {"rule": "both", "relative": 0.5}),
    (4, {"theta": 100.0}),  # no patch start after the first: one patch longer than any window
]


@pytest.mark.parametrize("order, changes", ENTROPY_CASES)
def test_entropy_long_text_pieces_have_the_ids_of_the_whole(order, changes, entropy_models, long_text, small_cut):
    seg = entropy_variant(entropy_models[order], **changes)
    assert seg.cut_rule == CUT_STREAM
    text = long_text[:150_000] + "é中\U0001f600 " * 3000  # multi-byte characters near the cuts
    whole = seg._encode_group([text.encode("utf-8")])[0].tolist()  # the whole text in one pass, as before pieces existed
    pieces = list(seg._long_pieces(text, 7_000))
    assert "".join(p for p, _ in pieces) == text
    assert len(pieces) >= (1 if changes.get("theta") == 100.0 else 20)
    assert [int(i) for _, ids in pieces for i in ids] == whole
    assert ids_of_chunks(seg, text, 7_000) == whole
    assert seg.decode(whole) == text


def test_entropy_long_documents_go_through_pieces(entropy_models, long_text, small_cut):
    seg = entropy_models[4]
    whole = seg._encode_group([long_text.encode("utf-8")])[0].tolist()
    assert len(list(seg.exact_cuts(long_text))) > 10
    assert seg.encode(long_text) == whole
    assert seg.encode_batch(["ab", long_text]) == [seg._encode_group([b"ab"])[0].tolist(), whole]
    assert seg.count_tokens([long_text, "ab"]).tolist() == [len(whole), len(seg._encode_group([b"ab"])[0])]


def test_entropy_measures_of_a_long_text_equal_the_whole_pass(entropy_models, long_text, monkeypatch):
    seg = entropy_variant(entropy_models[4], max_len=6)
    texts = ["a short one", long_text[:200_000], "another"]
    monkeypatch.setattr(base, "CUT_CHARS", 10**12)
    whole = seg.extra_measures(texts)  # every text in one pass, as before pieces existed
    monkeypatch.setattr(base, "CUT_CHARS", 7_000)
    assert seg._long(texts[1]) and len(list(seg._windows(texts[1].encode()))) > 20
    pieces = seg.extra_measures(texts)
    for key, value in whole.items():
        assert pieces[key] == pytest.approx(value, rel=1e-12), key


# --- zstd-dict: cut where no vocabulary string reaches across -------------------------------------


def test_zstd_free_places_by_hand():
    from toklab.segmenters.zstd_dict import ZstdDictSegmenter

    seg = ZstdDictSegmenter(b"", [b"ab", b"bcd", b"xyz"], "optimal")
    data = b"abcdxy"  # "ab" covers 0-1, "bcd" covers 1-3; nothing covers 3|4 ("dx" is not a string) or 4|5 ("xyz" does not fit)
    assert [p for p in range(1, len(data)) if seg._free(data, p)] == [4, 5]
    assert not seg._free("aé".encode(), 2)  # inside a character


@pytest.fixture(scope="module")
def zstd_models(long_text):
    from toklab.segmenters.zstd_dict import ZstdDictSegmenter

    trained = ZstdDictSegmenter.train(long_text[:300_000].split("\n"), 2000, dict_size="16kib", k="200", d="8")
    return {parse: ZstdDictSegmenter(trained.dictionary, list(trained._pieces[256:-1]), parse) for parse in ("optimal", "greedy")}


@pytest.mark.parametrize("parse", ["optimal", "greedy"])
def test_zstd_long_text_ids_equal_the_whole_parse(parse, zstd_models, long_text, small_cut):
    seg = zstd_models[parse]
    assert seg.cut_rule == CUT_STREAM and seg.max_len > 4
    text = long_text[:300_000] + "é中\U0001f600 " * 2000
    data = text.encode("utf-8")
    if parse == "optimal":
        whole = seg._optimal_ids([data])[0]  # sentencepiece's Viterbi on the whole text
    else:
        whole = [seg._ids[data[i : i + n]] for i, n in zip(np.cumsum([0, *seg.parse_lengths(data)[:-1]]).tolist(), seg.parse_lengths(data))]
    pieces = list(seg._long_pieces(text, 5_000))
    assert len(pieces) > 40 and "".join(p for p, _ in pieces) == text
    assert [int(i) for _, ids in pieces for i in ids] == whole
    assert ids_of_chunks(seg, text, 5_000) == whole
    assert seg.decode(whole) == text


def test_zstd_long_documents_go_through_pieces(zstd_models, long_text, small_cut):
    seg = zstd_models["optimal"]
    whole = seg._optimal_ids([long_text.encode("utf-8")])[0]
    assert len(list(seg.exact_cuts(long_text))) > 10
    assert seg.encode(long_text) == whole
    assert seg.encode_batch(["ab", long_text]) == [seg._optimal_ids([b"ab"])[0], whole]
    assert seg.count_tokens([long_text]).tolist() == [len(whole)]


# --- compare, filter and pretrain on a corpus holding one long document ---------------------------


def test_compare_counts_of_a_long_document_equal_the_library(long_text, tmp_path, small_cut, shared_tiktoken):
    from toklab.comparison import run_compare
    from toklab.gpt.flops import REFERENCE_SHAPE
    from toklab.measures import TextStats, segmentation_row

    path, records = long_corpus(tmp_path, long_text, "val")
    corpus = toklab.open_corpus(str(path), val_fraction=0.5)
    val = [r["text"] for r in records if split_of(r["id"], 0.5) == "val"]
    result = run_compare(corpus, ["bytes", "tiktoken:cl100k_base"], compressors=False)
    table = result.table.set_index("segmenter")
    for spec, whole in (("bytes", lambda t: list(t.encode("utf-8"))), ("tiktoken:cl100k_base", tiktoken_whole("cl100k_base"))):
        ids = [whole(t) for t in val]
        vocab = get_segmenter(spec).vocab_size
        expected = segmentation_row(ids, TextStats.of(val), vocab, threshold=0.3, shape=REFERENCE_SHAPE)
        row = table.loc[spec]
        assert bool(row["lossless"])
        for key in ("tokens", "bits_per_byte", "renyi_efficiency", "vocab_utilisation", "keep_rate_docs", "tokens_per_word"):
            assert row[key] == pytest.approx(expected[key], rel=1e-12), (spec, key)
        assert row["tokens"] == sum(map(len, ids))


def test_filter_ratio_of_a_long_document_equals_the_library(long_text, tmp_path, small_cut, shared_tiktoken):
    from toklab.filter import filter_corpus

    path, records = long_corpus(tmp_path, long_text, "val")
    whole = tiktoken_whole("cl100k_base")
    result = filter_corpus(str(path), threshold=0.001, segmenter="tiktoken:cl100k_base", dry_run=True, workers=1)
    assert result.rejected == len(records)  # every document is over 0.001 tokens/char
    ratios = {e["id"]: e["ratio"] for e in result.examples}
    long_id = records[5]["id"]
    assert ratios[long_id] == len(whole(long_text)) / len(long_text)
    for r in records:
        if r["id"] in ratios:
            assert ratios[r["id"]] == len(whole(r["text"])) / len(r["text"])


@pytest.mark.parametrize("spec", ["bytes", "tiktoken:cl100k_base"])
def test_pretrain_shards_of_a_long_document_equal_the_library(spec, long_text, tmp_path, small_cut, monkeypatch, shared_tiktoken):
    import toklab.gpt.data as data_module

    monkeypatch.setattr(data_module, "PIECE_FLUSH_TOKENS", 10_000)  # the writer gets the long document in many parts
    seg = get_segmenter(spec)
    whole = (lambda t: list(t.encode("utf-8"))) if spec == "bytes" else tiktoken_whole("cl100k_base")
    eot = seg.special_tokens["<|endoftext|>"]
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        path, records = long_corpus(tmp_path / split, long_text, split)
        corpus = toklab.open_corpus(str(path), val_fraction=0.5)
        data = build_token_data(corpus, seg, cache=False, shard_tokens=70_000)
        for part in ("train", "val"):
            stream = [eot]
            starts = []
            for r in records:
                if split_of(r["id"], 0.5) == part:
                    starts.append(len(stream))
                    stream += whole(r["text"]) + [eot]
            shards = data.train_shards if part == "train" else data.val_shards
            got = np.concatenate([read_shard(p) for p in shards]).tolist()
            assert got == stream, (spec, split, part)
            assert all(read_shard(p).size == 70_000 for p in shards[:-1])
            if part == "val":
                index = data.val_documents()
                assert index["start"].tolist() == starts
                assert index["tokens"].tolist() == [len(whole(r["text"])) for r in records if split_of(r["id"], 0.5) == "val"]


def test_words_of_a_long_text_are_counted_slice_by_slice(long_text, monkeypatch):
    import toklab.measures as measures

    monkeypatch.setattr(measures, "WORD_CHUNK_CHARS", 1000)
    for text in (long_text, "word" * 5000, " ".join(["ab"] * 3000), long_text[:123_457] + " x"):
        assert measures.count_words(text) == len(text.split())
