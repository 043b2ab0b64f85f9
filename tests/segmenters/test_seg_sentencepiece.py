"""SentencePiece kinds: `unigram`, `spm-bpe` (trained in-process) and `spm` (a .model file)."""

from __future__ import annotations

import json
import pickle
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toklab
from toklab import ToklabError
from toklab.files import cache_dir
from toklab.segmenters import EOT, get_segmenter, load_segmenter
from toklab.segmenters.base import MANIFEST
from toklab.segmenters.sentencepiece import (
    META,
    SentencePieceBPESegmenter,
    SentencePieceFileSegmenter,
    UnigramSegmenter,
    model_settings,
    training_sentences,
)

from conftest import SHARED  # ../shared, or TOKLAB_SHARED_DIR
TRICKY = [
    "",
    " ",
    "\n",
    "\x00\x01\t\r\n",
    "\u0301",  # a lone combining mark
    "e\u0301 vs \u00e9",
    "👩‍👩‍👧",
    "漢字かな",
    "שלום مرحبا",
    META,
    f"a{META}b",
    f" {META} {META}{META}  ",
    f"{META}leading and trailing{META}",
    EOT,
    f"before{EOT}after {EOT}\n",
    "many     spaces   here",
    "   leading spaces",
    "trailing spaces   ",
    "\n\nleading newlines",
    "trailing newlines\n\n\n",
    "\r\n\r\nwindows\r\nlines\r\n",
    "tabs\tand\x0bvertical\x0cfeeds\u2028\u2029\x85",
    "\u3000ideographic\u00a0no-break\u200bzero-width",
    "ﬁ ① Ａ ½ — nfkc would change these",
    "\U0010ffff\ue000 private use",
    "def f(x):\n    return x  # code\n",
    "1234567890 3.14159 1,000,000",
]


# --- training text ----------------------------------------------------------------------------------


def _stdlib_texts(limit: int) -> list[str]:
    """Real text that is always there: the standard library's own sources."""
    texts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        total += len(text.encode())
        if total >= limit:
            break
    return texts


def _shared_texts() -> list[str]:
    root = SHARED / "corpora"
    texts: list[str] = []
    for name, max_bytes in (("email", 110_000), ("code", 110_000), ("sotu", 60_000), ("udhr", 20_000)):
        if (root / name).is_dir():
            texts += [doc.text for doc in toklab.open_corpus(str(root / name), max_bytes=max_bytes)]
    return texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """About 300 KB of real text: the shared corpora when present, else stdlib sources."""
    texts = _shared_texts() if (SHARED / "corpora").is_dir() else []
    if sum(len(t) for t in texts) < 100_000:
        texts = _stdlib_texts(300_000)
    texts.append("Multilingual: 漢字かな שלום مرحبا Ελληνικά русский язык 👩‍👩‍👧\n" * 3)
    return texts


@pytest.fixture(scope="module")
def corpus_file(texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spm-corpus") / "docs.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": f"doc{i}", "text": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def small_texts(texts: list[str]) -> list[str]:
    return [t[:4000] for t in texts[:60]]


@pytest.fixture(scope="module")
def unigram(texts: list[str]) -> UnigramSegmenter:
    return UnigramSegmenter.train(iter(texts), 1000)


@pytest.fixture(scope="module")
def spm_bpe(texts: list[str]) -> SentencePieceBPESegmenter:
    return SentencePieceBPESegmenter.train(iter(texts), 1000)


@pytest.fixture(params=["unigram", "spm-bpe"])
def seg(request: pytest.FixtureRequest):
    return request.getfixturevalue("unigram" if request.param == "unigram" else "spm_bpe")


def check_lossless(seg, text: str) -> None:
    ids = seg.encode(text)
    assert all(isinstance(i, int) for i in ids)
    assert seg.decode(ids) == text
    data = text.encode("utf-8")
    lengths = seg.token_byte_lengths()
    assert int(lengths[ids].sum()) == len(data)
    spans = seg.byte_spans(ids)
    assert b"".join(data[a:b] for a, b in spans) == data
    assert all(b - a == lengths[i] for (a, b), i in zip(spans.tolist(), ids))
    assert b"".join(seg.token_bytes(i) for i in ids) == data


# --- trained models -------------------------------------------------------------------------------


def test_trained_models_are_lossless_with_the_requested_size(seg) -> None:
    assert seg.lossless and seg.lossy_reasons == ()
    assert seg.vocab_size == 1000
    assert seg.token_byte_lengths().shape == (1000,)
    assert seg.settings["normalizer"] == "identity" and seg.settings["byte_fallback"]
    assert repr(seg).endswith("vocab=1000>")


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_tricky(seg, text: str) -> None:
    check_lossless(seg, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_round_trip_hypothesis(seg, text: str) -> None:
    check_lossless(seg, text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from([" ", META, "a", "\n", "é", EOT[0], "\t"]), max_size=40))
def test_round_trip_meta_and_spaces(seg, text: str) -> None:
    check_lossless(seg, text)


def test_byte_spans_tile_real_text(seg, texts: list[str]) -> None:
    for text in texts[:40] + ["".join(texts[:5])]:
        check_lossless(seg, text)


def test_real_meta_character_is_spelled_in_bytes(seg) -> None:
    ids = seg.encode(f"a{META}b")
    assert seg.decode(ids) == f"a{META}b"
    assert [seg.token_bytes(i) for i in ids][1:4] == [b"\xe2", b"\x96", b"\x81"]
    space = seg.encode(" ")
    assert len(space) == 1 and seg.token_bytes(space[0]) == b" "


def test_endoftext_is_a_special_token_never_matched_in_text(seg) -> None:
    eot = seg.special_tokens[EOT]
    assert seg.special_tokens == {EOT: eot}
    assert seg.token_byte_lengths()[eot] == 0 and seg.token_bytes(eot) == b""
    assert eot not in seg.encode(f"x{EOT}y")
    assert seg.decode(seg.encode("a") + [eot] + seg.encode("b")) == "ab"


def test_newlines_and_indentation_are_learnt(unigram, spm_bpe) -> None:
    for seg in (unigram, spm_bpe):
        pieces = {seg.token_bytes(i) for i in range(seg.vocab_size)}
        assert b"\n" in pieces  # learnt as a piece, not only reachable through byte fallback
        [newline] = seg.encode("\n")
        assert not seg._sp.is_byte(newline)


def test_encode_batch_matches_encode(seg, texts: list[str]) -> None:
    batch = texts[:30] + TRICKY
    expected = [seg.encode(t) for t in batch]
    assert seg.encode_batch(batch) == expected
    assert seg.encode_batch(batch, workers=1) == expected
    assert seg.encode_batch(batch, workers=2) == expected
    assert seg.encode_batch([]) == []


def test_save_and_load(seg, texts: list[str], tmp_path: Path) -> None:
    seg = pickle.loads(pickle.dumps(seg))
    seg.params = {"arg": "1000", "num_threads": 2}
    folder = seg.save(tmp_path / "saved")
    assert (folder / "tokenizer.model").is_file() and (folder / MANIFEST).is_file()
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["kind"] == seg.kind and manifest["lossless"] is True and manifest["vocab_size"] == 1000
    loaded = load_segmenter(folder)
    assert type(loaded) is type(seg)
    assert loaded.vocab_size == seg.vocab_size and loaded.params == seg.params
    assert np.array_equal(loaded.token_byte_lengths(), seg.token_byte_lengths())
    assert loaded.special_tokens == seg.special_tokens
    for text in texts[:10] + TRICKY:
        assert loaded.encode(text) == seg.encode(text)
    # a standard .model file that SentencePiece itself loads
    plain = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert plain.get_piece_size() == seg.vocab_size
    assert plain.encode(texts[0], out_type=int) == seg.encode(texts[0]) or META in texts[0]
    assert get_segmenter(str(folder)).encode(texts[1]) == seg.encode(texts[1])


def test_pickle(seg, texts: list[str]) -> None:
    copy = pickle.loads(pickle.dumps(seg))
    assert copy.encode(texts[0]) == seg.encode(texts[0])
    assert copy.encode(f"x{META}y") == seg.encode(f"x{META}y")
    assert copy.lossless and copy.vocab_size == seg.vocab_size


# --- training details ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [UnigramSegmenter, SentencePieceBPESegmenter])
def test_training_is_deterministic(cls, small_texts: list[str]) -> None:
    first = cls.train(iter(small_texts), 600, num_threads="2")
    second = cls.train(iter(small_texts), 600, num_threads="2")
    assert first.model_proto == second.model_proto
    # sampling fewer sentences than the input holds is seeded too
    third = cls.train(iter(small_texts), 600, num_threads="2", input_sentence_size="400")
    fourth = cls.train(iter(small_texts), 600, num_threads="2", input_sentence_size="400")
    assert third.model_proto == fourth.model_proto
    assert third.params["input_sentence_size"] == 400 and third.params["num_threads"] == 2


def test_training_sentences_cut_lines_and_long_lines() -> None:
    text = "first line\nsecond  line\n\n\nafter blank lines\r\nwindows\n" + "ü€ word " * 3000 + "\nend\n\n"
    sentences = list(training_sentences([text], 1000))
    assert all(len(s.encode()) <= 1000 for s in sentences)
    assert sentences[:4] == ["first line", "\nsecond  line", "\n\n\nafter blank lines", "\r\nwindows"]
    assert "".join(sentences) == text.rstrip("\n")  # only the document's trailing line breaks go
    assert all(not s.endswith(("\n", "\r")) for s in sentences)  # SentencePiece would strip those


def test_one_long_line_is_not_skipped(texts: list[str]) -> None:
    # SentencePiece skips sentences over max_sentence_length; a document that is one 100 KB line
    # must still be learnt (without chunking, training would find no text at all).
    line = " ".join(" ".join(texts).split())[:100_000] + " zyxwvut" * 500
    assert "\n" not in line
    seg = UnigramSegmenter.train(iter([line]), 500, num_threads="1")
    assert seg.vocab_size == 500
    assert any(b"zyxwvut" in seg.token_bytes(i) for i in range(seg.vocab_size))
    check_lossless(seg, line)


def test_spaces_have_a_piece_even_without_spaces_in_training() -> None:
    seg = SentencePieceBPESegmenter.train(iter(["abcdefghij", "klmnopqrst"] * 50), 300)
    assert seg.lossless
    check_lossless(seg, "a b  c")
    assert len(seg.encode(" ")) == 1


def test_corpus_errors_are_raised_as_themselves() -> None:
    def broken():
        yield "some text to start with"
        raise ToklabError("the corpus broke")

    with pytest.raises(ToklabError, match="^the corpus broke$"):
        UnigramSegmenter.train(broken(), 300)


# --- through the registry ------------------------------------------------------------------------------


def test_registry_trains_caches_and_takes_options(corpus_file: Path) -> None:
    corpus = toklab.open_corpus(str(corpus_file))
    start = time.perf_counter()
    seg = get_segmenter("unigram:900,num_threads=1,input_sentence_size=200k", corpus)
    trained = time.perf_counter() - start
    assert isinstance(seg, UnigramSegmenter) and seg.vocab_size == 900 and seg.lossless
    assert seg.spec == "unigram:900,input_sentence_size=200k,num_threads=1"  # options sorted
    assert seg.params["num_threads"] == 1 and seg.params["input_sentence_size"] == 200_000
    assert seg.corpus_fingerprint == corpus.fingerprint()
    cached = [p.parent for p in (cache_dir() / "segmenters").glob(f"unigram-900-*/{MANIFEST}")]
    assert len(cached) == 1 and (cached[0] / "tokenizer.model").is_file()
    start = time.perf_counter()
    again = get_segmenter("unigram:900,num_threads=1,input_sentence_size=200k", corpus)
    assert time.perf_counter() - start < max(trained / 2, 0.5)
    assert again.model_proto == seg.model_proto and again.params == seg.params
    val = [doc.text for doc in corpus.val()][:5]
    assert [again.encode(t) for t in val] == [seg.encode(t) for t in val]


def test_registry_spm_bpe(corpus_file: Path) -> None:
    corpus = toklab.open_corpus(str(corpus_file), max_docs=40)
    seg = get_segmenter("spm-bpe:700,split_digits=false", corpus, cache=False)
    assert isinstance(seg, SentencePieceBPESegmenter) and seg.vocab_size == 700 and seg.lossless
    assert seg.params["split_digits"] is False


# --- the spm file kind ---------------------------------------------------------------------------------


def test_spm_file_kind_loads_a_toklab_model(unigram, texts: list[str], tmp_path: Path) -> None:
    folder = unigram.save(tmp_path / "uni")
    seg = get_segmenter(f"spm:{folder}/tokenizer.model")
    assert isinstance(seg, SentencePieceFileSegmenter)
    assert seg.lossless and seg.vocab_size == unigram.vocab_size
    assert seg.spec == f"spm:{folder}/tokenizer.model"
    assert seg.special_tokens == {EOT: unigram.special_tokens[EOT]}
    for text in texts[:10] + TRICKY:
        assert seg.encode(text) == unigram.encode(text)
        check_lossless(seg, text)
    # and it saves and loads as itself
    reloaded = load_segmenter(seg.save(tmp_path / "spm-saved"))
    assert isinstance(reloaded, SentencePieceFileSegmenter) and reloaded.params == {"arg": f"{folder}/tokenizer.model"}
    assert reloaded.encode(texts[0]) == unigram.encode(texts[0])


@pytest.fixture(scope="module")
def lossy_model(texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("lossy") / "nfkc"
    lines = [line for t in texts[:60] for line in t.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(prefix), vocab_size=500, normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=True, character_coverage=0.9995, minloglevel=2, num_threads=1,
    )
    return prefix.with_suffix(".model")


def test_spm_file_kind_reports_lossy_models(lossy_model: Path) -> None:
    seg = get_segmenter(f"spm:{lossy_model}")
    assert not seg.lossless
    reasons = " ".join(seg.lossy_reasons)
    assert "nmt_nfkc" in reasons and "add_dummy_prefix" in reasons and "byte fallback" in reasons
    assert repr(seg).endswith("LOSSY>")
    ids = seg.encode("Hello ﬁ world")
    assert seg.decode(ids) == "Hello fi world"  # normalised: lossy, as reported
    assert seg.token_byte_lengths().shape == (seg.vocab_size,)


def test_spm_file_kind_identity_without_byte_fallback_is_lossy(texts: list[str], tmp_path: Path) -> None:
    prefix = tmp_path / "nobytes"
    lines = [line for t in texts[:40] for line in t.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(prefix), vocab_size=400, normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, minloglevel=2, num_threads=1,
    )
    seg = SentencePieceFileSegmenter.from_spec(str(prefix) + ".model")
    assert not seg.lossless and seg.lossy_reasons == ("no byte fallback (unknown characters become <unk>)",)


def test_model_settings_agree_with_protobuf(unigram, lossy_model: Path) -> None:
    pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2")
    for data in (unigram.model_proto, lossy_model.read_bytes()):
        proto = pb.ModelProto.FromString(data)
        mine = model_settings(data)
        assert mine["byte_fallback"] == proto.trainer_spec.byte_fallback
        assert mine["normalizer"] == proto.normalizer_spec.name
        assert mine["add_dummy_prefix"] == proto.normalizer_spec.add_dummy_prefix
        assert mine["remove_extra_whitespaces"] == proto.normalizer_spec.remove_extra_whitespaces
        assert mine["escape_whitespaces"] == proto.normalizer_spec.escape_whitespaces
        assert mine["precompiled_charsmap"] == bool(proto.normalizer_spec.precompiled_charsmap)


# --- mistakes ----------------------------------------------------------------------------------------------


def error_of(spec: str, corpus=None) -> str:
    with pytest.raises(ToklabError) as err:
        get_segmenter(spec, corpus, cache=False)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_spm_paths(tmp_path: Path) -> None:
    assert "/nonexistent.model" in error_of("spm:/nonexistent.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"this is not a model")
    message = error_of(f"spm:{junk}")
    assert str(junk) in message and "not a sentencepiece model" in message
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    assert str(empty) in error_of(f"spm:{empty}")
    assert "needs the path" in error_of("spm")
    assert "no options" in error_of(f"spm:{junk},num_threads=2")


def test_bad_training_specs(corpus_file: Path, tmp_path: Path) -> None:
    corpus = toklab.open_corpus(str(corpus_file), max_docs=5)
    assert "vocabulary size" in error_of("unigram:abc", corpus)
    message = error_of("unigram:500,bogus=1", corpus)
    assert "bogus" in message and "input_sentence_size" in message and "num_threads" in message
    assert "whole number" in error_of("unigram:500,num_threads=many", corpus)
    assert "between 1 and 1,024" in error_of("spm-bpe:500,num_threads=0", corpus)
    assert "true or false" in error_of("unigram:500,split_digits=maybe", corpus)
    assert "character_coverage" in error_of("unigram:500,character_coverage=2", corpus)


def test_vocabulary_sizes_the_text_cannot_support(tmp_path: Path) -> None:
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": "hello world, tiny text"}) + "\n" for i in range(20)))
    corpus = toklab.open_corpus(str(path), val_fraction=0.0)
    message = error_of("unigram:5000", corpus)
    assert "at most" in message and "unigram:5000" in message
    assert "at most" in error_of("spm-bpe:5000", corpus)
    message = error_of("unigram:100", corpus)
    assert "at least" in message
    empty = tmp_path / "blank.jsonl"
    empty.write_text(json.dumps({"id": "x", "text": "\n\n"}) + "\n")
    assert "empty" in error_of("unigram:500", toklab.open_corpus(str(empty), val_fraction=0.0))


def test_lone_surrogates_raise_unicode_errors(spm_bpe) -> None:
    with pytest.raises(UnicodeEncodeError):
        spm_bpe.encode("a\ud800b")
    with pytest.raises(UnicodeEncodeError):
        spm_bpe.encode_batch(["fine", "a\udfffb"])
