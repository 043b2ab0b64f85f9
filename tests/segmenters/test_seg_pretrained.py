"""Pretrained segmenters: `tiktoken:` (named encodings and .tiktoken files) and `hf:` (tokenizer.json)."""

from __future__ import annotations

import base64
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toklab
from toklab.errors import ToklabError
from toklab.segmenters import get_segmenter, load_segmenter
from toklab.segmenters.pretrained import (
    HFTokenizerSegmenter,
    TiktokenSegmenter,
    read_tiktoken_file,
)
from toklab.segmenters.bpe import bytes_to_unicode

tiktoken = pytest.importorskip("tiktoken")
tokenizers = pytest.importorskip("tokenizers")

from conftest import tiktoken_dir  # TIKTOKEN_CACHE_DIR, else the shared folder (TOKLAB_SHARED_DIR)

VOCABULARIES = tiktoken_dir()
HAVE_TIKTOKEN_CACHE = VOCABULARIES is not None
needs_cache = pytest.mark.skipif(not HAVE_TIKTOKEN_CACHE, reason="no tiktoken vocabularies: set TIKTOKEN_CACHE_DIR or TOKLAB_SHARED_DIR")
NAMES = ["cl100k_base", "o200k_base", "gpt2"]

TRICKY = [
    "",
    " ",
    "hello world",
    "\x00\x01\x02\x1b\x7f\x85 control",
    "\u0301",
    "e\u0301 café",
    "👩‍👩‍👧",
    "日本語の文章。中文字符",
    "שלום مرحبا",
    "text <|endoftext|> more <|endofprompt|><|fim_prefix|>",
    "<|endoftext|>",
    "  \n\n\t\r\n  trailing   ",
    "\ud7ff\ue000\uffff\U0010ffff",
    "MiXeD CaSe ÀÉÎ",
]

TRAIN_TEXT = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!\n"
    "def encode(self, text: str) -> list[int]:\n    return self.encoding.encode_ordinary(text)\n"
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.\n"
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.\n"
    "Все люди рождаются свободными и равными в своем достоинстве и правах.\n"
    "人人生而自由，在尊严和权利上一律平等。すべての人間は、生まれながらにして自由であり。\n"
    "שלום עולם. مرحبا بالعالم. 👩‍👩‍👧 🎉\n"
)


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tk() -> dict[str, TiktokenSegmenter]:
    if not HAVE_TIKTOKEN_CACHE:
        pytest.skip("no tiktoken vocabularies: set TIKTOKEN_CACHE_DIR or TOKLAB_SHARED_DIR")
    return {name: TiktokenSegmenter.from_spec(name) for name in NAMES}


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny byte-level BPE tokenizer.json and a tiny lowercasing WordPiece one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.implementations import BertWordPieceTokenizer

    folder = tmp_path_factory.mktemp("hf")
    corpus = [TRAIN_TEXT] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    (folder / "bytebpe").mkdir()
    bpe.save(str(folder / "bytebpe" / "tokenizer.json"))

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(corpus, vocab_size=300, show_progress=False)
    wordpiece.save(str(folder / "wordpiece.json"))
    return {"bytebpe": folder / "bytebpe" / "tokenizer.json", "wordpiece": folder / "wordpiece.json"}


@pytest.fixture(scope="module")
def hf_bpe(hf_files: dict[str, Path]) -> HFTokenizerSegmenter:
    return HFTokenizerSegmenter.from_spec(str(hf_files["bytebpe"]))


@pytest.fixture()
def empty_tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TIKTOKEN_CACHE_DIR -> an empty folder, and tiktoken's in-memory encodings forgotten."""
    import tiktoken.registry

    empty = tmp_path / "empty-tiktoken-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    return empty


def check_segmenter_on(seg, text: str) -> None:
    ids = seg.encode(text)
    assert seg.decode(ids) == text
    data = text.encode("utf-8")
    spans = seg.byte_spans(ids)
    assert b"".join(data[s:e] for s, e in spans) == data
    assert int(seg.token_byte_lengths()[np.asarray(ids, dtype=np.int64)].sum()) == len(data)
    assert b"".join(seg.token_bytes(i) for i in ids) == data


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


# --- tiktoken: named encodings ------------------------------------------------------------------------


@needs_cache
@pytest.mark.parametrize("name", NAMES)
def test_tiktoken_tricky_round_trip_and_spans(tk, name: str) -> None:
    seg = tk[name]
    for text in TRICKY:
        check_segmenter_on(seg, text)
    assert seg.lossless


@needs_cache
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_tiktoken_hypothesis_round_trip(tk, text: str) -> None:
    for name in NAMES:
        check_segmenter_on(tk[name], text)


@needs_cache
def test_tiktoken_known_figures(tk) -> None:
    assert tk["cl100k_base"].vocab_size == 100277 == tiktoken.get_encoding("cl100k_base").n_vocab
    assert tk["o200k_base"].vocab_size == 200019 == tiktoken.get_encoding("o200k_base").n_vocab
    assert tk["gpt2"].vocab_size == 50257
    assert tk["cl100k_base"].encode("hello world") == [15339, 1917]
    assert tk["gpt2"].encode("hello world") == [31373, 995]
    for name in NAMES:
        enc = tiktoken.get_encoding(name)
        assert tk[name].encode("hello world") == enc.encode("hello world")
        assert tk[name].special_tokens == enc._special_tokens
        assert tk[name].spec == f"tiktoken:{name}"
    assert tk["cl100k_base"].special_tokens["<|endoftext|>"] == 100257
    # special-token text is ordinary text
    assert 100257 not in tk["cl100k_base"].encode("<|endoftext|>")


@needs_cache
def test_tiktoken_byte_lengths_cover_gaps_and_specials(tk) -> None:
    seg = tk["cl100k_base"]
    lengths = seg.token_byte_lengths()
    assert lengths.shape == (100277,)
    assert lengths[100256] == 0  # a gap between the mergeable ranks and the specials
    for i in seg.special_tokens.values():
        assert lengths[i] == 0
    enc = tiktoken.get_encoding("cl100k_base")
    for i in [0, 255, 1000, 50000, 100255]:
        assert lengths[i] == len(enc.decode_single_token_bytes(i)) > 0
    assert seg.token_bytes(100257) == b""


@needs_cache
def test_tiktoken_ids_match_library_on_real_text(tk, shared_corpora: Path) -> None:
    texts = [doc.text for doc in toklab.open_corpus(str(shared_corpora / "udhr"), max_docs=100)]
    texts += [doc.text for doc in toklab.open_corpus(str(shared_corpora / "code"), max_docs=30)]
    assert len(texts) > 50
    for name in NAMES:
        seg, enc = tk[name], tiktoken.get_encoding(name)
        batch = seg.encode_batch(texts)
        assert batch == [enc.encode_ordinary(t) for t in texts]
        assert seg.encode_batch(texts[:5], workers=1) == batch[:5]
        for text, ids in zip(texts[:20], batch):
            check_segmenter_on(seg, text)


@needs_cache
def test_tiktoken_save_load_without_network(tk, tmp_path: Path, empty_tiktoken_cache: Path) -> None:
    for name in ["cl100k_base", "gpt2"]:
        seg = tk[name]
        saved = seg.save(tmp_path / name)
        assert (saved / "ranks.tiktoken").is_file()
        loaded = load_segmenter(saved)
        assert isinstance(loaded, TiktokenSegmenter)
        assert loaded.vocab_size == seg.vocab_size
        assert loaded.special_tokens == seg.special_tokens
        assert loaded.spec == seg.spec
        assert np.array_equal(loaded.token_byte_lengths(), seg.token_byte_lengths())
        for text in TRICKY + [TRAIN_TEXT]:
            assert loaded.encode(text) == seg.encode(text)
            assert loaded.decode(loaded.encode(text)) == text
        assert get_segmenter(str(saved)).encode(TRAIN_TEXT) == seg.encode(TRAIN_TEXT)
    assert list(empty_tiktoken_cache.iterdir()) == []  # nothing was fetched or cached


@needs_cache
def test_tiktoken_pickles(tk) -> None:
    seg = tk["o200k_base"]
    seg.token_byte_lengths()
    clone = pickle.loads(pickle.dumps(seg))
    assert clone.encode(TRAIN_TEXT) == seg.encode(TRAIN_TEXT)
    assert np.array_equal(clone.token_byte_lengths(), seg.token_byte_lengths())


def test_tiktoken_file_spec_pickles_with_its_ranks(tmp_path: Path) -> None:
    ranks = {bytes([b]): b for b in range(256)}
    ranks.update({b"th": 256, b"the": 257, b" the": 258})
    path = tmp_path / "tiny.tiktoken"
    path.write_bytes(b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n" for t, r in ranks.items()))
    seg = get_segmenter(f"tiktoken:{path},pat=gpt2")
    assert seg.vocab_size == 259 and seg.special_tokens == {}
    assert seg.encode("the the") == [257, 258]
    clone = pickle.loads(pickle.dumps(seg))
    assert clone.encode("the the") == [257, 258]
    for text in TRICKY:
        check_segmenter_on(seg, text)


@needs_cache
def test_tiktoken_file_spec(tk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tk["cl100k_base"]
    saved = source.save(tmp_path / "saved")
    ranks_file = saved / "ranks.tiktoken"
    # our file is the format tiktoken reads (TIKTOKEN_CACHE_DIR="" stops it copying the file into a cache)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    from tiktoken.load import load_tiktoken_bpe

    assert read_tiktoken_file(ranks_file) == load_tiktoken_bpe(str(ranks_file))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(VOCABULARIES))
    seg = get_segmenter(f"tiktoken:{ranks_file}")  # default pattern: cl100k_base's
    assert seg.vocab_size == 100256 and seg.special_tokens == {}
    enc = tiktoken.get_encoding("cl100k_base")
    for text in [TRAIN_TEXT, "hello world", "<|endoftext|>"]:
        assert seg.encode(text) == enc.encode_ordinary(text)
    check_segmenter_on(seg, TRAIN_TEXT)
    other = get_segmenter(f"tiktoken:{ranks_file},pat=gpt2")
    assert other.decode(other.encode(TRAIN_TEXT)) == TRAIN_TEXT
    # cl100k's pattern keeps up to 3 digits together, gpt2's does not
    assert len(other.encode("1234567")) <= len(seg.encode("1234567"))
    assert seg.encode("1234567") == enc.encode_ordinary("1234567")


def test_tiktoken_pattern_names_need_no_download(empty_tiktoken_cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "bytes.tiktoken"
    path.write_bytes(b"".join(base64.b64encode(bytes([b])) + b" " + str(b).encode() + b"\n" for b in range(256)))
    for pat in ["cl100k_base", "o200k_base", "gpt2", "r50k_base", "p50k_base"]:
        seg = TiktokenSegmenter.from_spec(str(path), pat=pat)
        assert seg.encode("ab") == [97, 98]
    assert list(empty_tiktoken_cache.iterdir()) == []


# --- tiktoken: errors ---------------------------------------------------------------------------------


def test_tiktoken_unknown_name() -> None:
    with pytest.raises(ToklabError) as exc:
        get_segmenter("tiktoken:nonesuch")
    message = one_line(exc)
    assert "nonesuch" in message and "cl100k_base" in message and "o200k_base" in message


def test_tiktoken_offline_fails_fast(empty_tiktoken_cache: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ToklabError) as exc:
        get_segmenter("tiktoken:cl100k_base")
    assert time.monotonic() - start < 10
    message = one_line(exc)
    assert "cl100k_base" in message and "TIKTOKEN_CACHE_DIR" in message
    assert list(empty_tiktoken_cache.iterdir()) == []


@pytest.mark.parametrize(
    "spec, words",
    [
        ("tiktoken", ["needs"]),
        ("tiktoken:/nonexistent/x.tiktoken", ["no such"]),
        ("tiktoken:cl100k_base,pat=gpt2", ["pat="]),
        ("tiktoken:x.tiktoken,bogus=1", ["bogus"]),
        ("tiktoken:x.tiktoken,pat=nonesuch", ["nonesuch"]),
    ],
)
def test_tiktoken_bad_specs(spec: str, words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.tiktoken").write_bytes(base64.b64encode(b"a") + b" 0\n")
    with pytest.raises(ToklabError) as exc:
        get_segmenter(spec)
    message = one_line(exc)
    for word in words:
        assert word in message


def test_tiktoken_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("this is not base64 at all\n")
    with pytest.raises(ToklabError) as exc:
        get_segmenter(f"tiktoken:{bad}")
    assert "bad.tiktoken:1" in one_line(exc)


# --- hf: byte-level BPE -----------------------------------------------------------------------------


def test_gpt2_byte_table() -> None:
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "\u0120" and table[ord("\n")] == "\u010a"
    assert table[0] == "\u0100" and table[0xAD] == "\u0143"
    from tokenizers import pre_tokenizers

    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())


def test_hf_byte_level_tricky(hf_bpe: HFTokenizerSegmenter) -> None:
    assert hf_bpe.byte_level and hf_bpe.lossless
    assert hf_bpe.special_tokens == {"<|endoftext|>": 0}
    assert hf_bpe.token_byte_lengths()[0] == 0
    assert hf_bpe.vocab_size == hf_bpe.tokenizer.get_vocab_size(with_added_tokens=True) == 600
    for text in TRICKY + [TRAIN_TEXT]:
        check_segmenter_on(hf_bpe, text)
    # special-token text is ordinary text; the library itself would match it as the special
    assert 0 not in hf_bpe.encode("a <|endoftext|> b")
    assert 0 in hf_bpe.tokenizer.encode("a <|endoftext|> b", add_special_tokens=False).ids
    assert hf_bpe.decode([0]) == "<|endoftext|>"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_hf_byte_level_hypothesis(hf_bpe: HFTokenizerSegmenter, text: str) -> None:
    check_segmenter_on(hf_bpe, text)


def test_hf_ids_match_library_on_real_text(hf_bpe: HFTokenizerSegmenter, shared_corpora: Path) -> None:
    texts = [doc.text for doc in toklab.open_corpus(str(shared_corpora / "udhr"), max_docs=100)]
    texts += [doc.text for doc in toklab.open_corpus(str(shared_corpora / "sotu"), max_docs=3)]
    batch = hf_bpe.encode_batch(texts)
    assert batch == [hf_bpe.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    assert hf_bpe.encode_batch(texts[:5], workers=1) == batch[:5]
    for text in texts[:30]:
        check_segmenter_on(hf_bpe, text)


def test_hf_added_tokens(hf_files: dict[str, Path], tmp_path: Path) -> None:
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(hf_files["bytebpe"]))
    tok.add_tokens([AddedToken("héllo wörld", normalized=False)])
    tok.add_special_tokens(["<|pad|>"])
    tok.save(str(tmp_path / "tokenizer.json"))
    seg = get_segmenter(f"hf:{tmp_path}")  # a folder holding tokenizer.json
    assert seg.vocab_size == 602 and seg.lossless
    assert seg.special_tokens == {"<|endoftext|>": 0, "<|pad|>": 601}
    lengths = seg.token_byte_lengths()
    assert lengths[600] == len("héllo wörld".encode()) and lengths[601] == 0
    text = "x héllo wörld <|pad|> é"
    assert 600 in seg.encode(text) and 601 not in seg.encode(text)
    check_segmenter_on(seg, text)


def test_hf_save_load_pickle(hf_bpe: HFTokenizerSegmenter, tmp_path: Path) -> None:
    saved = hf_bpe.save(tmp_path / "seg")
    assert (saved / "tokenizer.json").is_file()
    loaded = load_segmenter(saved)
    assert isinstance(loaded, HFTokenizerSegmenter)
    assert loaded.spec == hf_bpe.spec and loaded.vocab_size == hf_bpe.vocab_size and loaded.lossless
    assert np.array_equal(loaded.token_byte_lengths(), hf_bpe.token_byte_lengths())
    clone = pickle.loads(pickle.dumps(hf_bpe))
    for text in TRICKY + [TRAIN_TEXT]:
        assert loaded.encode(text) == hf_bpe.encode(text) == clone.encode(text)
    manifest = json.loads((saved / "toklab-segmenter.json").read_text())
    assert manifest["kind"] == "hf" and manifest["lossless"] is True


# --- hf: lossy tokenizers --------------------------------------------------------------------------


def test_hf_wordpiece_is_lossy(hf_files: dict[str, Path]) -> None:
    seg = get_segmenter(f"hf:{hf_files['wordpiece']}")
    assert not seg.byte_level and not seg.lossless
    assert "[CLS]" in seg.special_tokens and seg.token_byte_lengths()[seg.special_tokens["[CLS]"]] == 0
    assert seg.decode(seg.encode("Hello World")) == "hello world"
    assert seg.token_byte_lengths().shape == (seg.vocab_size,)
    # lengths approximate the text: a word counts the space before it, so for plain lower-case
    # words with single spaces the total is the text plus one leading space
    text = "the quick brown fox jumps over the lazy dog"
    ids = seg.encode(text)
    assert seg.encode(text) == seg.tokenizer.encode(text, add_special_tokens=False).ids
    assert int(seg.token_byte_lengths()[ids].sum()) == len(" " + text)
    assert "LOSSY" in repr(seg)


def test_hf_byte_level_with_prefix_space_is_lossy(hf_files: dict[str, Path], tmp_path: Path) -> None:
    config = json.loads(hf_files["bytebpe"].read_text())
    config["pre_tokenizer"]["add_prefix_space"] = True
    path = tmp_path / "prefix.json"
    path.write_text(json.dumps(config))
    seg = get_segmenter(f"hf:{path}")
    assert seg.byte_level and not seg.lossless


# --- hf: errors -------------------------------------------------------------------------------------


def test_hf_missing_file() -> None:
    with pytest.raises(ToklabError) as exc:
        get_segmenter("hf:/nonexistent/tokenizer.json")
    assert "/nonexistent/tokenizer.json" in one_line(exc)


def test_hf_bad_file(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ToklabError) as exc:
        get_segmenter(f"hf:{tmp_path / 'tokenizer.json'}")
    one_line(exc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToklabError) as exc:
        get_segmenter(f"hf:{tmp_path / 'empty'}")
    assert "tokenizer.json" in one_line(exc)


def test_hf_hub_id_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    with pytest.raises(ToklabError) as exc:
        get_segmenter("hf:some-org/some-model")
    assert time.monotonic() - start < 10
    message = one_line(exc)
    assert "some-org/some-model" in message and "offline" in message and "tokenizer.json" in message


def test_hf_options() -> None:
    with pytest.raises(ToklabError) as exc:
        get_segmenter("hf:x.json,bogus=1")
    assert "bogus" in one_line(exc)
    with pytest.raises(ToklabError) as exc:
        get_segmenter("hf")
    one_line(exc)


# --- registry -----------------------------------------------------------------------------------------


@needs_cache
def test_registry_builds_tiktoken() -> None:
    seg = toklab.segmenters.get_segmenter("tiktoken:cl100k_base")
    assert isinstance(seg, TiktokenSegmenter)
    assert seg.encode("hello world") == [15339, 1917]
    assert "tiktoken:cl100k_base" in repr(seg)
