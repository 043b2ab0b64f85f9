"""The segmenter interface, registry and spec parsing, the `bytes` kind and BPE."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toklab
from toklab import ToklabError
from toklab.segmenters import EOT, Segmenter, get_segmenter, load_segmenter, parse_spec
from toklab.segmenters import registry
from toklab.segmenters.bpe import PATTERNS, BPESegmenter, bytes_to_unicode
from toklab.segmenters.bytes import ByteSegmenter

TRICKY = [
    "",
    "\x00\x01\x02\t\r\n\x7f\x1b[0m",
    "\u0301",  # a lone combining mark
    "e\u0301 \u0301\u0301",
    "👩‍👩‍👧 👍🏽 🏳️‍🌈",
    "漢字かなカナ 한국어",
    "שלום עולם مرحبا بالعالم",
    "<|endoftext|> in the middle <|endoftext|>",
    "   leading and trailing   \n\n",
    "12345678 3.14159 1,000,000",
    "tabs\tand\r\nwindows\rlines",
    "\ufeffBOM and \u200b zero width \u2028 separators",
]


def assert_lossless_and_tiled(seg: Segmenter, text: str) -> None:
    ids = seg.encode(text)
    assert seg.decode(ids) == text
    data = text.encode("utf-8")
    spans = seg.byte_spans(ids)
    assert b"".join(data[s:e] for s, e in spans) == data
    assert spans.shape == (len(ids), 2)
    if len(ids):
        assert spans[0, 0] == 0 and spans[-1, 1] == len(data)
        assert np.array_equal(spans[1:, 0], spans[:-1, 1])
        assert np.array_equal(spans[:, 1] - spans[:, 0], seg.token_byte_lengths()[ids])
    assert b"".join(seg.token_bytes(i) for i in ids) == data


# --- spec parsing and the registry ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, kind, arg, options",
    [
        ("bytes", "bytes", None, {}),
        ("bpe:32k", "bpe", "32k", {}),
        ("BPE:8k,regex=gpt2,min_frequency=3", "bpe", "8k", {"regex": "gpt2", "min_frequency": "3"}),
        ("tiktoken:cl100k_base", "tiktoken", "cl100k_base", {}),
        ("hf:some/dir/tokenizer.json", "hf", "some/dir/tokenizer.json", {}),
        ("entropy:target=4.5", "entropy", None, {"target": "4.5"}),
    ],
)
def test_parse_spec(spec, kind, arg, options):
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.arg, parsed.options) == (kind, arg, options)


@pytest.mark.parametrize("text, value", [("8k", 8000), ("32k", 32000), ("50257", 50257), ("1.5k", 1500), ("1m", 1_000_000)])
def test_vocab_sizes(text, value):
    assert registry.parse_vocab_size(text, "bpe:" + text) == value


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nosuchkind:3", "unknown segmenter kind 'nosuchkind'"),
        ("bpe", "needs a vocabulary size"),
        ("bpe:abc", "needs a vocabulary size"),
        ("bpe:0.5", "bad vocabulary size"),
        ("bpe:100", "at least 258"),
        ("bpe:1k,regex=perl", "unknown bpe regex 'perl'"),
        ("bpe:1k,colour=blue", "unknown bpe option(s) colour"),
        ("bpe:1k,2k", "two arguments"),
        ("bytes:5", "'bytes' takes no arguments"),
        ("", "empty segmenter spec"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message, tiny_corpus):
    with pytest.raises(ToklabError) as err:
        get_segmenter(spec, tiny_corpus)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_saved_folder_is_a_spec(tmp_path):
    ByteSegmenter().save(tmp_path / "seg")
    assert isinstance(get_segmenter(str(tmp_path / "seg")), ByteSegmenter)
    with pytest.raises(ToklabError, match="not a saved segmenter"):
        load_segmenter(tmp_path)


def test_save_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ToklabError, match="not a saved segmenter"):
        ByteSegmenter().save(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


class ToySegmenter(ByteSegmenter):
    """A third-party kind: bytes under another name."""

    kind = "toy"


def test_third_party_kinds_come_from_entry_points(monkeypatch):
    point = EntryPoint(name="toy", value=f"{__name__}:ToySegmenter", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == registry.ENTRY_POINT_GROUP else [])
    assert "toy" in registry.available_kinds()
    seg = get_segmenter("toy")
    assert type(seg).__name__ == "ToySegmenter" and seg.encode("ab") == [97, 98]


# --- bytes ---------------------------------------------------------------------------------------


def test_bytes_kind():
    seg = get_segmenter("bytes")
    assert seg.vocab_size == 257 and seg.special_tokens == {EOT: 256}
    assert seg.encode("hé") == [104, 0xC3, 0xA9]
    assert seg.token_byte_lengths()[256] == 0 and seg.token_byte_lengths()[:256].sum() == 256
    assert seg.encode_batch(["a", "€"]) == [[97], [0xE2, 0x82, 0xAC]]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bytes_is_lossless(text):
    assert_lossless_and_tiled(ByteSegmenter(), text)


# --- BPE -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_corpus(default_corpus_build):
    return toklab.open_corpus("default", max_bytes=1_500_000)


@pytest.fixture(scope="module")
def bpe(tiny_corpus) -> BPESegmenter:
    return get_segmenter("bpe:2k", tiny_corpus)


def test_bytes_to_unicode_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"
    assert all(c.isprintable() and not c.isspace() for c in table.values())


def test_bpe_vocabulary(bpe):
    assert bpe.vocab_size == 2000
    assert bpe.special_tokens == {EOT: 1999}
    lengths = bpe.token_byte_lengths()
    assert lengths[1999] == 0
    assert (lengths[:1999] >= 1).all() and sorted(bpe.token_bytes(i) for i in range(1999) if lengths[i] == 1) == [bytes([b]) for b in range(256)]
    assert bpe.fast_path and bpe.params["fast"] == "on" and bpe.corpus_fingerprint


@pytest.mark.parametrize("text", TRICKY)
def test_bpe_tricky_strings(bpe, text):
    assert_lossless_and_tiled(bpe, text)
    assert bpe.encode(text) == bpe._hf_encode([text])[0]


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_bpe_is_lossless_on_any_unicode(bpe, text):
    assert_lossless_and_tiled(bpe, text)
    assert bpe.encode(text) == bpe._hf_encode([text])[0]


def test_a_literal_special_string_is_ordinary_text(bpe):
    ids = bpe.encode("a <|endoftext|> b")
    assert bpe.special_tokens[EOT] not in ids


def test_digits_split_in_threes_as_in_gpt4(bpe):
    pieces = [bpe.token_bytes(i) for i in bpe.encode("1234567")]
    assert b"".join(pieces) == b"1234567" and max(len(p) for p in pieces) <= 3


def test_cl100k_pattern_matches_tiktoken(shared_tiktoken):
    import tiktoken

    # toklab spells `\p{N}{1,3}+` as `\p{N}{1,3}` so Oniguruma reads it as fancy-regex does
    assert PATTERNS["cl100k"] == tiktoken.get_encoding("cl100k_base")._pat_str.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
    assert PATTERNS["o200k"] == tiktoken.get_encoding("o200k_base")._pat_str


def test_training_is_deterministic(tiny_corpus, bpe):
    again = get_segmenter("bpe:2k", tiny_corpus, cache=False)
    assert again._tokenizer_json == bpe._tokenizer_json


def test_trained_segmenters_are_cached(tiny_corpus, bpe, isolated_cache):
    manifests = list((isolated_cache / "segmenters").glob("bpe-2k-*/toklab-segmenter.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["corpus_fingerprint"] == tiny_corpus.fingerprint()
    assert manifest["kind"] == "bpe" and manifest["vocab_size"] == 2000 and manifest["toklab_version"] == toklab.__version__
    other_split = toklab.open_corpus("default", max_bytes=1_500_000, val_fraction=0.2)
    assert registry.training_key(parse_spec("bpe:2k"), other_split) != manifests[0].parent.name


def test_only_a_kind_with_a_training_revision_changes_its_cache_key(tiny_corpus):
    import hashlib

    def old_key(kind: str, arg, options: dict) -> str:  # the key as it was before revisions existed
        payload = json.dumps([kind, arg, options, tiny_corpus.fingerprint(), tiny_corpus.options.val_fraction], sort_keys=True)
        return f"{kind}-{arg or ''}-" + hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()

    for spec in ("bpe:2k", "entropy:target=4.5", "entropy:model=ngram,order=4"):
        parsed = parse_spec(spec)
        assert registry.training_key(parsed, tiny_corpus) == old_key(parsed.kind, parsed.arg, parsed.options), spec
    transformer = parse_spec("entropy:model=transformer,target=4.5")
    assert registry.training_key(transformer, tiny_corpus) != old_key("entropy", None, transformer.options)


def test_save_load_round_trip(bpe, tmp_path):
    bpe.save(tmp_path / "bpe")
    loaded = load_segmenter(tmp_path / "bpe")
    text = "Save me: 漢字 and 12345 <|endoftext|>"
    assert loaded.encode(text) == bpe.encode(text)
    assert loaded.vocab_size == bpe.vocab_size and loaded.fast_path == bpe.fast_path
    assert np.array_equal(loaded.token_byte_lengths(), bpe.token_byte_lengths())
    assert loaded.params == bpe.params and loaded.corpus_fingerprint == bpe.corpus_fingerprint


def test_exported_tokenizer_json_loads_in_tokenizers(bpe, tmp_path):
    from tokenizers import Tokenizer

    bpe.save(tmp_path / "bpe")
    hf = Tokenizer.from_file(str(tmp_path / "bpe" / "tokenizer.json"))
    text = "Exported for tokenizers and transformers users."
    assert hf.encode(text).ids == bpe.encode(text)
    assert hf.token_to_id(EOT) == bpe.special_tokens[EOT]
    assert hf.decode(bpe.encode(text)) == text


def test_fast_path_equals_tokenizers_on_shared_corpora(bpe, shared_corpora):
    texts = [d.text for name in ["sotu", "email", "code", "udhr"] for d in toklab.open_corpus(str(shared_corpora / name), max_docs=150)]
    assert bpe.encode_batch(texts) == bpe._hf_encode(texts)


def test_fast_off_uses_tokenizers(tiny_corpus, bpe):
    slow = get_segmenter("bpe:2k,fast=off", tiny_corpus)
    assert not slow.fast_path
    assert slow.encode_batch(TRICKY) == bpe.encode_batch(TRICKY)


def test_batch_equals_single(bpe):
    assert bpe.encode_batch(TRICKY, workers=2) == [bpe.encode(t) for t in TRICKY]


def test_pickles_for_process_pools(bpe):
    import pickle

    clone = pickle.loads(pickle.dumps(bpe))
    assert clone.encode("pickled text") == bpe.encode("pickled text") and clone.fast_path


def test_base_process_pool_batch_path():
    texts = [f"document {i} ünïcode" for i in range(100)]
    seg = ByteSegmenter()
    assert Segmenter.encode_batch(seg, texts, workers=2) == [seg.encode(t) for t in texts]


def test_get_segmenters_skips_what_cannot_be_had(tiny_corpus, tmp_path, monkeypatch):
    from toklab.segmenters import get_segmenters

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    segs, notes = get_segmenters(["bytes", "hf:someorg/somemodel", "bpe:2k"], tiny_corpus)
    assert [s.spec for s in segs] == ["bytes", "bpe:2k"]
    assert len(notes) == 1 and notes[0].startswith("skipped hf:someorg/somemodel: ") and "offline" in notes[0]
    assert all("\n" not in n for n in notes)
    with pytest.raises(ToklabError, match="/nonexistent/m.model"):  # a missing file is a mistake, not a skip
        get_segmenters(["bytes", "spm:/nonexistent/m.model", "bpe:2k"], tiny_corpus)


@pytest.mark.parametrize("specs, message", [(["bytes", "bpee:2k"], "unknown segmenter kind 'bpee'"), (["bytes", "bpe:lots"], "needs a vocabulary size")])
def test_get_segmenters_fails_on_mistakes_before_any_work(tiny_corpus, specs, message):
    from toklab.segmenters import get_segmenters

    with pytest.raises(ToklabError, match=message):
        get_segmenters(specs, tiny_corpus)


def test_pretrained_specs_remember_their_argument(shared_tiktoken):
    assert get_segmenter("tiktoken:gpt2").spec == "tiktoken:gpt2"


def test_exported_tokenizer_json_loads_in_transformers(bpe, tmp_path):
    transformers = pytest.importorskip("transformers")
    bpe.save(tmp_path / "bpe")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "bpe" / "tokenizer.json"), eos_token=EOT)
    text = "Loaded by transformers: 12345 漢字"
    assert fast(text, add_special_tokens=False)["input_ids"] == bpe.encode(text)
    assert fast.eos_token_id == bpe.special_tokens[EOT]
    assert fast.decode(bpe.encode(text)) == text


def test_spec_names_keep_their_options(tiny_corpus, tmp_path):
    seg = get_segmenter("bpe:2k,regex=gpt2", tiny_corpus)
    assert seg.spec == "bpe:2k,regex=gpt2" and seg.pattern_name == "gpt2"
    seg.save(tmp_path / "s")
    assert load_segmenter(tmp_path / "s").spec == "bpe:2k,regex=gpt2"
    assert get_segmenter("bpe:2k", tiny_corpus).spec == "bpe:2k"


def test_special_tokens_show_no_bytes(bpe):
    assert bpe.token_bytes(bpe.special_tokens[EOT]) == b""
    assert Segmenter.token_bytes(bpe, bpe.special_tokens[EOT]) == b""


def test_long_training_texts_are_cut_where_every_pattern_ends_a_word(monkeypatch):
    import random

    import toklab.segmenters.bpe as bpe

    rng = random.Random(0)
    pieces = ["\n", "\n\n", " ", "  ", "\t", "a", "Word", "123", "!", ".\n", " \n", "é", "中", "'s", "x", "\r\n"]
    text = "".join(rng.choice(pieces) for _ in range(60_000))
    for name, pattern in bpe.PATTERNS.items():
        pre = bpe._hf_tokenizer(pattern).pre_tokenizer  # tokenizers' own split, independently of the cut
        whole = [w for w, _ in pre.pre_tokenize_str(text)]
        chunks = list(bpe.training_chunks(text, 500))
        assert "".join(chunks) == text and len(chunks) > 20
        assert [w for c in chunks for w, _ in pre.pre_tokenize_str(c)] == whole, name
    assert list(bpe.training_chunks("no newline at all " * 100, 50)) == ["no newline at all " * 100]  # left whole
    # a BPE trained on the cut text is the BPE trained on the whole text
    doc = "\n".join(f"line {i}: the quick brown fox {i % 7} jumps over {i % 13} lazy dogs" for i in range(4000))
    monkeypatch.setattr(bpe, "TRAIN_CHUNK_CHARS", 10_000)
    cut = bpe.BPESegmenter.train([doc], 400)
    monkeypatch.setattr(bpe, "TRAIN_CHUNK_CHARS", 10**12)
    whole = bpe.BPESegmenter.train([doc], 400)
    assert whole.vocab_size == cut.vocab_size and whole.encode(doc) == cut.encode(doc)
    assert len(list(bpe.training_chunks(doc, 1 << 20))) == 1 and len(list(bpe.training_chunks(doc, 10_000))) > 10
