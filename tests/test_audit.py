"""`toklab audit`: the byte-accounting certificate, and pretrain/study refusing a segmenter that fails it.

The broken segmenters below are real ones with one classic accounting bug each; every expected
count is worked out by hand from the texts (UTF-8 lengths written out in the comments)."""

from __future__ import annotations

import io
import json
import unicodedata

import numpy as np
import pytest

from cli_helpers import cli_error, run_cli
from conftest import val_records, write_word_corpus
from toklab.audit import PROBES, audit, training_audit
from toklab.errors import ToklabError
from toklab.segmenters.base import EOT
from toklab.segmenters.bytes import ByteSegmenter

TINY = {"context": 16, "batch_size": 2, "eval_bytes": 512, "val_bytes": 4096}
EMOJI_TEXT = "héllo 😀"  # h é(2 bytes) l l o space 😀(4 bytes): 11 bytes, 6 of them in non-ASCII characters


# --- broken segmenters ---------------------------------------------------------------------------------


class DecodedLengths(ByteSegmenter):
    """The classic bug: lengths from len(decode([id]).encode()), so each byte 0x80-0xFF (not a
    whole character) is counted as the 3 bytes of U+FFFD."""

    kind = "decoded-lengths"

    def _byte_lengths(self) -> np.ndarray:
        return np.array([len(self.decode([i]).encode("utf-8")) for i in range(self.vocab_size)], dtype=np.int64)


class Lowercasing(ByteSegmenter):
    """A lossy normaliser: encode lowercases the text."""

    kind = "lowercasing"

    def encode(self, text: str) -> list[int]:
        return list(text.lower().encode("utf-8"))

    def encode_batch(self, texts, workers=None):  # noqa: ANN001, ANN201
        return [self.encode(t) for t in texts]


class Nfkc(Lowercasing):
    """A lossy normaliser that also changes byte lengths: NFKC ("ﬁ", 3 bytes, becomes "fi", 2)."""

    kind = "nfkc"

    def encode(self, text: str) -> list[int]:
        return list(unicodedata.normalize("NFKC", text).encode("utf-8"))


class SpecialWithBytes(ByteSegmenter):
    """<|endoftext|> given the 13 bytes of its name."""

    kind = "special-with-bytes"

    def _byte_lengths(self) -> np.ndarray:
        lengths = np.ones(257, dtype=np.int64)
        lengths[256] = len(EOT)
        return lengths

    def token_bytes(self, token_id: int) -> bytes:
        return EOT.encode() if token_id == 256 else bytes([token_id])


@pytest.fixture
def broken_kinds(monkeypatch):
    """The broken segmenters as spec kinds, for the CLI, pretrain and study."""
    from toklab.segmenters import kinds

    for cls in (DecodedLengths, Lowercasing, SpecialWithBytes):
        monkeypatch.setitem(kinds.BUILTIN, cls.kind, f"{__name__}:{cls.__name__}")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("audit") / "docs.jsonl", docs=200, words=30, seed=1)


# --- the audit on broken segmenters -------------------------------------------------------------------


def test_a_table_built_from_decode_fails_with_every_partial_byte_and_the_documents_it_miscounts():
    result = audit(DecodedLengths(), [EMOJI_TEXT, "abc"])
    assert not result.passed
    table = result.check("byte_table")
    assert (table.failures, table.checked) == (128, 257)  # ids 0x80..0xFF: 3 in the table, 1 byte each
    assert table.examples[0] == {"id": 128, "table": 3, "bytes": 1, "token": "\\x80"}
    byte_sum = result.check("byte_sum")
    assert (byte_sum.failures, byte_sum.checked) == (1, 2)  # "abc" is ASCII: counted right
    # 5 ASCII bytes count 1, the 6 bytes of é and 😀 count 3 each: 5 + 18 = 23 for 11 bytes
    assert byte_sum.examples == [{"doc": "0", "bytes": 11, "token_bytes": 23, "difference": 12}]
    assert result.check("byte_spans").failures == 1 and result.check("byte_spans").examples[0]["last_end"] == 23
    for name in ("spelling", "round_trip", "round_trip_probes", "specials"):
        assert result.check(name).passed, name  # the ids and their bytes are right; only the table is not
    assert result.failed() == "byte table (128 of 257 ids), byte sum (1 of 2 documents), byte spans (1 of 2 documents)"


def test_a_lowercasing_normaliser_fails_the_round_trip():
    result = audit(Lowercasing(), ["Hello World", "abc", "ÀB"])
    round_trip = result.check("round_trip")
    assert (round_trip.failures, round_trip.checked) == (2, 3)
    assert round_trip.examples[0] == {"doc": "0", "first_difference_at_char": 0, "text": "Hello World", "decoded": "hello world"}
    assert result.check("spelling").failures == 2
    assert result.check("byte_sum").passed  # lowercasing these keeps every byte length
    # of the probes, these hold capitals: "Hello World", "MiXeD CaSe ÀÉÎÕÜ", "ﬁ ① ＡＢＣ ½" (fullwidth capitals)
    probes = result.check("round_trip_probes")
    assert (probes.failures, probes.checked) == (3, len(PROBES))
    assert not result.passed


def test_an_nfkc_normaliser_miscounts_bytes_too():
    result = audit(Nfkc(), ["ﬁne"], probes=False)  # ﬁ is 3 bytes, "fi" 2: 5 bytes, 4 tokens
    assert result.check("byte_sum").examples == [{"doc": "0", "bytes": 5, "token_bytes": 4, "difference": -1}]
    assert result.check("round_trip").failures == 1
    assert result.check("round_trip_probes").checked == 0


def test_a_special_token_with_bytes_fails():
    result = audit(SpecialWithBytes(), ["abc"])
    assert result.check("specials").examples == [{"token": EOT, "id": 256, "table": 13, "token_bytes": 13}]
    assert (result.check("specials").failures, result.check("byte_table").failures) == (1, 1)
    assert result.failed() == "byte table (1 of 257 ids), specials (1 of 1 special token)"


def test_a_real_sentencepiece_model_with_nfkc_and_a_dummy_prefix_fails(tmp_path, corpus_file):
    import sentencepiece as spm

    from toklab.segmenters import get_segmenter

    text = [json.loads(line)["text"] for line in open(corpus_file, encoding="utf-8")]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=model, vocab_size=290, hard_vocab_limit=False, byte_fallback=True,
        normalization_rule_name="nmt_nfkc", add_dummy_prefix=True, minloglevel=2,
    )  # fmt: skip
    (tmp_path / "m.model").write_bytes(model.getvalue())
    seg = get_segmenter(f"spm:{tmp_path / 'm.model'}")
    docs = ["the cat sat", "a dog ran"]
    result = audit(seg, docs)
    # the dummy prefix: each text gets a space it does not have, counted as a byte (11 + 1, 9 + 1)
    assert [e["difference"] for e in result.check("byte_sum").examples] == [1, 1]
    assert result.leading_space["adds_prefix_space"] and result.leading_space["convention"].startswith("SentencePiece '▁'")
    assert result.normaliser["name"] == "nmt_nfkc" and not result.normaliser["declared_lossless"]
    assert result.byte_fallback["ids"] == 256  # <0x00> .. <0xFF>
    failed = [e["text"] for e in result.check("round_trip_probes").examples]
    assert failed[0] == "  two  spaces,  leading and trailing  "  # remove_extra_whitespaces
    assert not result.passed


# --- passing segmenters: the findings by hand ----------------------------------------------------------


def test_bytes_passes_and_counts_the_partial_character_tokens():
    result = audit(ByteSegmenter(), [EMOJI_TEXT, "abc"])
    assert result.passed and result.failed() == ""
    assert (result.documents, result.bytes, result.tokens) == (2, 14, 14)
    assert [(c.checked, c.failures) for c in result.checks] == [(257, 0), (1, 0), (2, 0), (2, 0), (2, 0), (2, 0), (len(PROBES), 0)]
    # 0x80..0xFF are never whole characters; in the text, é's 2 bytes and 😀's 4
    assert result.partial_characters["ids"] == 128 and result.partial_characters["uses"] == 6
    assert result.partial_characters["examples"][0] == {"id": 128, "bytes": "80"}
    assert result.byte_fallback == {"ids": 0, "uses": 0, "examples": []}
    assert result.leading_space["convention"].startswith("none") and not result.leading_space["adds_prefix_space"]
    assert result.normaliser == {"declared_lossless": True, "name": None, "reasons": []}
    assert result.to_json()["passed"] is True and result.to_json()["checks"][0]["passed"] is True


def test_a_trained_bpe_and_unigram_pass(corpus_file):
    import toklab
    from toklab.segmenters import get_segmenter

    corpus = toklab.open_corpus(corpus_file)
    bpe = get_segmenter("bpe:4k", corpus)
    result = audit(bpe, [EMOJI_TEXT, "the cat sat"])
    assert result.passed
    # trained on ASCII words only: é and 😀 stay one byte per token, 6 partial-character tokens
    assert result.partial_characters["uses"] == 6
    assert result.leading_space["convention"].startswith("byte-level 'Ġ'")
    assert result.leading_space["examples"][0]["string"].startswith("Ġ") and result.leading_space["examples"][0]["bytes"].startswith(" ")
    unigram = get_segmenter("unigram:300", corpus)
    result = audit(unigram, [EMOJI_TEXT, "the cat sat", "a real \u2581"])
    assert result.passed, result.failed()
    assert result.byte_fallback["ids"] == 256
    assert result.byte_fallback["uses"] == 6 + 3  # é and 😀 are not pieces: their 6 bytes, and a real ▁'s 3
    assert result.leading_space["convention"].startswith("SentencePiece '▁'")
    assert result.normaliser["name"] == "identity"


def test_tiktoken_gpt2_passes(shared_tiktoken):
    import tiktoken

    from toklab.segmenters import get_segmenter

    result = audit(get_segmenter("tiktoken:gpt2"), ["😀", "Hello world"])
    assert result.passed
    pieces = [tiktoken.get_encoding("gpt2").decode_single_token_bytes(i) for i in tiktoken.get_encoding("gpt2").encode_ordinary("😀")]
    assert pieces == [b"\xf0\x9f\x98", b"\x80"]  # the library's own cut: two tokens, neither a whole character
    assert result.partial_characters["uses"] == 2
    assert result.leading_space["convention"] == "a plain space"  # tiktoken's vocabulary is the bytes themselves


# --- the CLI -------------------------------------------------------------------------------------------


def test_cli_passes_with_exit_0_and_writes_audit_json(capsys, corpus_file, tmp_path):
    code, out, err = run_cli(capsys, "audit", "bytes", "-c", corpus_file, "--out", tmp_path / "a", "-q")
    assert code == 0, err
    assert "PASS" in out
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    val = val_records(corpus_file)
    assert report["passed"] is True and report["part"] == "val" and report["segmenter"] == "bytes"
    assert report["documents"] == len(val) and report["bytes"] == sum(len(r["text"].encode()) for r in val)
    assert {c["name"]: (c["checked"], c["failures"]) for c in report["checks"]}["byte_sum"] == (len(val), 0)
    code, _, _ = run_cli(capsys, "audit", "bytes", "-c", corpus_file, "--out", tmp_path / "a", "--docs", "3", "-q")  # its own report is replaced
    assert code == 0 and json.loads((tmp_path / "a" / "audit.json").read_text())["documents"] == 3


def test_cli_fails_with_exit_1_on_broken_accounting(capsys, corpus_file, tmp_path, broken_kinds):
    code, out, err = run_cli(capsys, "audit", "decoded-lengths", "-c", corpus_file, "--out", tmp_path / "b", "-q")
    assert code == 1, err
    assert "FAIL" in out and "Traceback" not in out + err
    report = json.loads((tmp_path / "b" / "audit.json").read_text())
    assert report["passed"] is False
    table = next(c for c in report["checks"] if c["name"] == "byte_table")
    assert (table["failures"], table["passed"]) == (128, False)
    # the word corpus is ASCII: every document is counted right, only the table is wrong
    assert next(c for c in report["checks"] if c["name"] == "byte_sum")["failures"] == 0


def test_cli_bad_input_is_exit_2(capsys, corpus_file, tmp_path):
    assert "unknown part" in cli_error(capsys, "audit", "bytes", "-c", corpus_file, "--part", "test", "--out", tmp_path / "c")
    assert "unknown segmenter kind" in cli_error(capsys, "audit", "nope:1", "-c", corpus_file, "--out", tmp_path / "c")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert "not empty" in cli_error(capsys, "audit", "bytes", "-c", corpus_file, "--out", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine" and not (tmp_path / "mine" / "audit.json").exists()


# --- pretrain and study refuse a failing segmenter ---------------------------------------------------------


def test_pretrain_refuses_a_failing_segmenter_unless_allow_lossy(capsys, corpus_file, tmp_path, broken_kinds):
    args = ["pretrain", "-c", corpus_file, "-s", "decoded-lengths", "--steps", "1", "--context", "16", "--batch-size", "2", "--eval-bytes", "512"]
    message = cli_error(capsys, *args, "--out", tmp_path / "refused")
    assert "decoded-lengths fails the byte-accounting audit (byte table (128 of 257 ids))" in message
    assert "pass --allow-lossy to train anyway" in message
    assert not (tmp_path / "refused").exists()
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "allowed", "--allow-lossy", "-q")
    assert code == 0, err
    run = json.loads((tmp_path / "allowed" / "run.json").read_text())
    assert run["byte_audit"]["passed"] is False and run["byte_audit"]["allow_lossy"] is True
    assert run["byte_audit"]["failed"] == "byte table (128 of 257 ids)"
    notes = json.loads((tmp_path / "allowed" / "summary.json").read_text())["notes"]
    assert any(n.startswith("--allow-lossy: decoded-lengths fails the byte-accounting audit") for n in notes)


def test_pretrain_records_a_passing_audit_and_still_knows_runs_from_before_it(corpus_file, tmp_path):
    from toklab.pretrain import pretrain

    result = pretrain(corpus_file, "bytes", steps=1, out=tmp_path / "run", **TINY)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    val = val_records(corpus_file)
    assert run["byte_audit"] == {"passed": True, "segmenter": "bytes", "documents": len(val), "bytes": sum(len(r["text"].encode()) for r in val)}
    assert not any("allow-lossy" in n for n in result.notes)
    del run["byte_audit"]  # a run folder written before the audit existed
    (tmp_path / "run" / "run.json").write_text(json.dumps(run))
    again = pretrain(corpus_file, "bytes", steps=1, out=tmp_path / "run", **TINY)
    assert any("already finished" in n for n in again.notes)


def test_a_patch_model_audits_the_segmenter_of_its_patches_only(corpus_file, tmp_path, broken_kinds):
    import toklab
    from toklab.pretrain import pretrain
    from toklab.segmenters.patchers import load_patcher

    with pytest.raises(ToklabError, match="decoded-lengths fails the byte-accounting audit"):
        pretrain(corpus_file, "decoded-lengths", arch="blt", steps=1, out=tmp_path / "blt", **TINY)
    assert not (tmp_path / "blt").exists()
    corpus = toklab.open_corpus(corpus_file)
    record = training_audit(load_patcher("static:size=4", corpus), corpus)
    assert record["passed"] and "nothing to audit" in record["note"]


def test_study_refuses_a_failing_segmenter_before_anything_runs(corpus_file, tmp_path, broken_kinds):
    from toklab.study import run_study

    with pytest.raises(ToklabError, match=r"special-with-bytes fails the byte-accounting audit \(byte table \(1 of 257 ids\), specials \(1 of 1 special token\)\).*--allow-lossy"):
        run_study(corpus_file, ["bytes", "special-with-bytes"], [2e8], seeds=1, model="tiny", context=16, out=tmp_path / "study", batch_size=2)
    assert not (tmp_path / "study").exists()


def test_study_with_allow_lossy_trains_and_notes_every_audit(corpus_file, tmp_path, broken_kinds):
    from toklab.study import run_study

    result = run_study(
        corpus_file, ["bytes", "decoded-lengths"], [2e8], seeds=1, model="tiny", context=16, out=tmp_path / "study", batch_size=2,
        val_bytes=4096, eval_bytes=512, allow_lossy=True,
    )  # fmt: skip
    assert "byte-accounting audit passed for bytes (the first 50 validation documents, up to about 1,000,000 bytes)" in result.notes
    assert "--allow-lossy: decoded-lengths fails the byte-accounting audit (byte table (128 of 257 ids)); its bits-per-byte is not the text's" in result.notes
    runs = {p.name.split("-")[0]: json.loads((p / "run.json").read_text())["byte_audit"] for p in (tmp_path / "study" / "runs").iterdir()}
    assert sorted(a.get("allow_lossy", False) for a in runs.values()) == [False, True]
