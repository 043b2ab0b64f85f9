"""`audit`: a certificate that a segmenter's byte accounting is right, so its bits-per-byte is.

Bits-per-byte divides a model's loss by the UTF-8 bytes of the text, and toklab gets those bytes
from the ids (`Segmenter.token_byte_lengths`). Published figures have been off by a fifth through
this accounting: a byte table built from `len(decode([id]).encode())` counts a token that holds
part of a character as the 3 bytes of U+FFFD; a SentencePiece "▁" counted as a 3-byte character,
or a dummy-prefix space counted on top of the text; special tokens given bytes. The audit checks,
on real documents and a few fixed probe texts:

- byte table: for every id, `token_byte_lengths()[id] == len(bytes of id)` (specials 0), the bytes
  taken from `token_bytes`, or from the vocabulary string for byte-fallback pieces (`<0xNN>` is 1);
- specials: every special token has 0 bytes in the table and in `token_bytes`;
- byte sum: per document, the ids' byte lengths add up to the document's UTF-8 length;
- byte spans: `byte_spans(ids)` start at 0, follow each other without gap or overlap, and end at
  the document's UTF-8 length;
- spelling: the ids' bytes, joined, are the document's UTF-8 bytes (each byte scored once);
- round trip: `decode(encode(text)) == text`, on the documents and on the probe texts.

It also reports, without failing on them: tokens that hold part of a character (their bytes are
not whole UTF-8 characters: normal for byte-level vocabularies, and the tokens a decode-built table
miscounts), byte-fallback pieces, the leading-space convention (SentencePiece's "▁", byte-level
"Ġ", or a plain space), and the normaliser the segmenter declares.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from toklab.errors import ToklabError
from toklab.text import count, whole_utf8

if TYPE_CHECKING:
    from toklab.corpus import Corpus
    from toklab.segmenters import Segmenter

AUDIT_FILE = "audit.json"
DEFAULT_DOCS = 1000  # the CLI's --docs
EXAMPLES = 3  # examples kept per finding
TRAINING_DOCS = 50  # pretrain and study audit the first this many validation documents ...
TRAINING_BYTES = 1_000_000  # ... up to about this many bytes: cheap next to training
BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
META = "\u2581"  # SentencePiece's stand-in for a space
BYTE_LEVEL_SPACE = "\u0120"  # "Ġ": the space byte in GPT-2's byte-to-character table
# Texts every lossless segmenter round-trips: spaces, line breaks, case, composed and decomposed
# accents, emoji, CJK, compatibility forms (an NFKC normaliser changes them), no-break and
# zero-width spaces, a real "▁", and special-token text read as ordinary text.
PROBES = (
    "Hello World",
    "  two  spaces,  leading and trailing  ",
    "tabs\tand\nline\n\nbreaks\r\n",
    "MiXeD CaSe ÀÉÎÕÜ",
    "café naïve e\u0301",
    "emoji 😀 🎉 👩‍👩‍👧",
    "日本語の文章。中文",
    "ﬁ ① ＡＢＣ ½",
    "a\u00a0b\u200bc",
    "a real \u2581 here",
    "<|endoftext|>",
)
CHECKS = {  # name -> what it means, for the certificate
    "byte_table": "every id's byte length equals the length of its bytes (specials 0)",
    "specials": "special tokens stand for 0 bytes",
    "byte_sum": "each document's token byte lengths add up to its UTF-8 length",
    "byte_spans": "byte spans start at 0, tile the document, end at its UTF-8 length",
    "spelling": "the tokens' bytes, joined, are the document's UTF-8 bytes",
    "round_trip": "decode(encode(text)) == text, on the documents",
    "round_trip_probes": "decode(encode(text)) == text, on fixed probe texts",
}


@dataclass
class Check:
    """One check: how many items (ids or documents) it looked at, how many failed, a few examples."""

    name: str
    meaning: str
    checked: int = 0
    failures: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failures == 0

    def fail(self, example: dict[str, Any]) -> None:
        self.failures += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class AuditResult:
    """What `audit` found: the checks (pass/fail), and the findings that do not fail it."""

    segmenter: str
    vocab_size: int
    documents: int
    bytes: int
    tokens: int
    checks: list[Check]
    partial_characters: dict[str, Any]  # ids whose bytes are not whole characters; their uses
    byte_fallback: dict[str, Any]  # <0xNN> pieces in the vocabulary; their uses
    leading_space: dict[str, Any]  # how a word's leading space is written
    normaliser: dict[str, Any]  # what the segmenter declares about changing text
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def failed(self) -> str:
        """The failed checks in a few words, e.g. 'byte table (128 of 257 ids), byte sum (2 of 3
        documents)'; '' when it passed."""
        unit = {"byte_table": "id", "specials": "special token", "round_trip_probes": "probe text"}
        return ", ".join(
            f"{c.name.replace('_', ' ')} ({c.failures:,} of {count(c.checked, unit.get(c.name, 'document'))})" for c in self.checks if not c.passed
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        for check, item in zip(self.checks, data["checks"]):
            item["passed"] = check.passed
        return data


# --- what the segmenter exposes -------------------------------------------------------------------


def _vocabulary_string(segmenter: "Segmenter") -> Callable[[int], str | None] | None:
    """id -> the vocabulary's own string for it, where the kind's library has one (SentencePiece's
    pieces, a `tokenizers` vocabulary); None for kinds whose vocabulary is bytes (tiktoken, bytes).
    Duck-typed: the segmenter interface has no such call, and only these libraries have strings."""
    sp = getattr(segmenter, "_sp", None)
    if sp is not None and hasattr(sp, "id_to_piece"):
        size = sp.get_piece_size()
        return lambda i: sp.id_to_piece(i) if 0 <= i < size else None
    for attr in ("tokenizer", "_hf"):  # hf's Tokenizer; bpe's own tokenizers model
        tokenizer = getattr(segmenter, attr, None)
        if tokenizer is not None and hasattr(tokenizer, "id_to_token"):
            return tokenizer.id_to_token
    return None


def describe_normaliser(segmenter: "Segmenter") -> dict[str, Any]:
    """What the segmenter declares: its `lossless` flag, why not (SentencePiece's `lossy_reasons`),
    and its normaliser's name where the kind exposes one (SentencePiece's normalizer spec, a
    `tokenizers` normalizer); name None when it declares none."""
    name = None
    settings = getattr(segmenter, "settings", None)
    if isinstance(settings, dict) and "normalizer" in settings:
        name = settings.get("normalizer") or ("custom rules" if settings.get("normalization_rule_tsv") or settings.get("precompiled_charsmap") else None)
    config = getattr(segmenter, "_config", None)
    if isinstance(config, dict) and config.get("normalizer") is not None:
        normalizer = config["normalizer"]
        name = normalizer.get("type", "custom") if isinstance(normalizer, dict) else str(normalizer)
    return {"declared_lossless": bool(segmenter.lossless), "name": name, "reasons": list(getattr(segmenter, "lossy_reasons", ()) or ())}


def _id_bytes(segmenter: "Segmenter", vocab_string: Callable[[int], str | None] | None) -> tuple[list[bytes], list[int]]:
    """The bytes every id stands for, found apart from the byte-length table (`token_bytes`; a
    byte-fallback piece `<0xNN>` is its one byte; specials nothing), and the byte-fallback ids."""
    specials = set(segmenter.special_tokens.values())
    out: list[bytes] = []
    fallback: list[int] = []
    for i in range(segmenter.vocab_size):
        if i in specials:
            out.append(b"")
            continue
        piece = vocab_string(i) if vocab_string is not None else None
        match = BYTE_FALLBACK.match(piece) if piece else None
        if match:
            fallback.append(i)
            out.append(bytes([int(match.group(1), 16)]))
        else:
            out.append(bytes(segmenter.token_bytes(i)))
    return out, fallback


def _show(data: bytes) -> str:
    """Bytes for a report: the text where it decodes, hex escapes where it does not."""
    return data.decode("utf-8", errors="backslashreplace")


def _leading_space(segmenter: "Segmenter", id_bytes: list[bytes], vocab_string: Callable[[int], str | None] | None, prefix_added: bool) -> dict[str, Any]:
    """How a token that starts a word carries its space: the vocabulary strings of the tokens whose
    bytes are a space then a non-space say which convention the kind writes ("▁", "Ġ", or the space
    itself); without strings, the space is in the bytes. Also ids whose string's "▁" was counted as
    the 3 bytes of a real "▁" (the meta symbol miscounted)."""
    starts = [i for i, b in enumerate(id_bytes) if len(b) > 1 and b[:1] == b" " and b[1:2] != b" "]
    marks: dict[str, int] = {}
    meta_as_bytes: list[int] = []
    if vocab_string is not None:
        for i in starts:
            piece = vocab_string(i) or ""
            marks[piece[:1]] = marks.get(piece[:1], 0) + 1
        for i, b in enumerate(id_bytes):
            piece = vocab_string(i) or ""
            if piece.startswith(META) and b.startswith(META.encode()):
                meta_as_bytes.append(i)
    mark = max(marks, key=lambda k: marks[k]) if marks else (" " if starts else None)
    names = {META: "SentencePiece '▁' (U+2581 stands for the 1-byte space)", BYTE_LEVEL_SPACE: "byte-level 'Ġ' (GPT-2's table: stands for the space byte)", " ": "a plain space"}
    convention = names.get(mark, f"{mark!r}") if mark is not None else "none (no token starts with a space)"
    return {
        "convention": convention,
        "space_prefixed_ids": len(starts),
        "examples": [{"id": i, "bytes": _show(id_bytes[i]), **({"string": vocab_string(i)} if vocab_string else {})} for i in starts[:EXAMPLES]],
        "adds_prefix_space": prefix_added,
        "meta_counted_as_bytes": len(meta_as_bytes),
    }


# --- the audit --------------------------------------------------------------------------------------


def _texts(docs: Iterable[Any]) -> list[tuple[str, str]]:
    """(id, text) for strings (numbered from 0) or corpus documents (their ids)."""
    out = []
    for n, doc in enumerate(docs):
        if isinstance(doc, str):
            out.append((str(n), doc))
        else:
            out.append((str(doc.id), doc.text))
    return out


def audit(segmenter: "Segmenter", docs: Iterable[Any], *, probes: bool = True) -> AuditResult:
    """Audit `segmenter`'s byte accounting on `docs` (strings or corpus documents), and on the
    fixed PROBES texts when `probes`. Plain data back; `result.passed` says whether bits-per-byte
    computed from its ids is right."""
    import numpy as np

    texts = _texts(docs)
    size = segmenter.vocab_size
    table = np.asarray(segmenter.token_byte_lengths(), dtype=np.int64)
    vocab_string = _vocabulary_string(segmenter)
    id_bytes, fallback = _id_bytes(segmenter, vocab_string)
    specials = segmenter.special_tokens
    special_ids = set(specials.values())
    checks = {name: Check(name, meaning) for name, meaning in CHECKS.items()}
    warnings: list[str] = []

    # the table against the bytes found apart from it
    byte_table = checks["byte_table"]
    byte_table.checked = size
    if table.shape != (size,):
        byte_table.fail({"table_entries": int(table.shape[0]), "vocab_size": size})
    else:
        for i in np.flatnonzero(table != np.array([len(b) for b in id_bytes], dtype=np.int64)).tolist():
            byte_table.fail({"id": i, "table": int(table[i]), "bytes": len(id_bytes[i]), "token": _show(id_bytes[i])})
    special_check = checks["specials"]
    special_check.checked = len(specials)
    for name, i in sorted(specials.items(), key=lambda kv: kv[1]):
        in_table = int(table[i]) if 0 <= i < table.shape[0] else None
        own = len(segmenter.token_bytes(i))
        if in_table != 0 or own != 0:
            special_check.fail({"token": name, "id": i, "table": in_table, "token_bytes": own})

    # the documents
    partial = np.array([bool(b) and not whole_utf8(b) for b in id_bytes], dtype=bool)
    is_fallback = np.zeros(size, dtype=bool)
    is_fallback[fallback] = True
    is_special = np.zeros(size, dtype=bool)
    is_special[list(special_ids)] = True
    encoded = segmenter.encode_batch([t for _, t in texts]) if texts else []
    n_bytes = n_tokens = partial_uses = fallback_uses = special_uses = 0
    for (doc_id, text), ids in zip(texts, encoded):
        data = text.encode("utf-8", errors="surrogatepass")
        ids = np.asarray(ids, dtype=np.int64)
        n_bytes += len(data)
        n_tokens += len(ids)
        for name in ("byte_sum", "byte_spans", "spelling", "round_trip"):
            checks[name].checked += 1
        if len(ids) and (ids.min() < 0 or ids.max() >= size):
            checks["byte_sum"].fail({"doc": doc_id, "bytes": len(data), "error": f"ids outside the vocabulary of {size:,}"})
            continue
        partial_uses += int(partial[ids].sum())
        fallback_uses += int(is_fallback[ids].sum())
        special_uses += int(is_special[ids].sum())
        total = int(table[ids].sum())
        if total != len(data):
            checks["byte_sum"].fail({"doc": doc_id, "bytes": len(data), "token_bytes": total, "difference": total - len(data)})
        spans = np.asarray(segmenter.byte_spans(ids), dtype=np.int64).reshape(-1, 2)
        tiled = (
            spans.shape[0] == len(ids)
            and (len(ids) == 0 and len(data) == 0 or len(ids) > 0 and spans[0, 0] == 0 and spans[-1, 1] == len(data))
            and bool((spans[:, 1] >= spans[:, 0]).all())
            and bool((spans[1:, 0] == spans[:-1, 1]).all())
        )
        if not tiled:
            gaps = np.flatnonzero(spans[1:, 0] != spans[:-1, 1]) if spans.shape[0] > 1 else np.array([], dtype=np.int64)
            where = int(gaps[0]) + 1 if gaps.size else None
            checks["byte_spans"].fail({"doc": doc_id, "bytes": len(data), "first_start": int(spans[0, 0]) if len(spans) else None, "last_end": int(spans[-1, 1]) if len(spans) else None, "first_gap_at_token": where})
        spelled = b"".join(id_bytes[i] for i in ids.tolist())
        if spelled != data:
            at = next((k for k, (a, b) in enumerate(zip(spelled, data)) if a != b), min(len(spelled), len(data)))
            checks["spelling"].fail({"doc": doc_id, "first_difference_at_byte": at, "text": _show(data[at : at + 24]), "tokens": _show(spelled[at : at + 24])})
        decoded = segmenter.decode(ids.tolist())
        if decoded != text:
            at = next((k for k, (a, b) in enumerate(zip(decoded, text)) if a != b), min(len(decoded), len(text)))
            checks["round_trip"].fail({"doc": doc_id, "first_difference_at_char": at, "text": text[at : at + 24], "decoded": decoded[at : at + 24]})

    # the probe texts
    probe_check = checks["round_trip_probes"]
    if probes:
        for text, ids in zip(PROBES, segmenter.encode_batch(list(PROBES))):
            probe_check.checked += 1
            decoded = segmenter.decode(list(ids))
            if decoded != text:
                probe_check.fail({"text": text, "decoded": decoded})
    first = segmenter.encode_batch(["hello"])[0]
    prefix_added = all(0 <= i < size for i in first) and b"".join(id_bytes[i] for i in first).startswith(b" ")

    if special_uses:
        warnings.append(f"encode put {count(special_uses, 'special token')} into the documents (they count 0 bytes, but the model is scored on predicting them)")
    if type(segmenter).token_bytes is _base_token_bytes():
        warnings.append("this kind's token_bytes comes from decode, so the byte-table check cannot see a table that counts U+FFFD for partial characters")
    leading = _leading_space(segmenter, id_bytes, vocab_string, prefix_added)
    if leading["meta_counted_as_bytes"]:
        warnings.append(f"{count(leading['meta_counted_as_bytes'], 'id')} whose '▁' is counted as the 3 bytes of a real '▁' rather than a space")
    if prefix_added:
        warnings.append("encode adds a space before the text (a dummy prefix): its byte would be counted on top of the text's")
    partial_ids = np.flatnonzero(partial).tolist()
    return AuditResult(
        segmenter=segmenter.spec,
        vocab_size=size,
        documents=len(texts),
        bytes=n_bytes,
        tokens=n_tokens,
        checks=list(checks.values()),
        partial_characters={"ids": len(partial_ids), "uses": partial_uses, "examples": [{"id": i, "bytes": id_bytes[i].hex(" ")} for i in partial_ids[:EXAMPLES]]},
        byte_fallback={"ids": len(fallback), "uses": fallback_uses, "examples": [{"id": i, "string": vocab_string(i) if vocab_string else None} for i in fallback[:EXAMPLES]]},
        leading_space=leading,
        normaliser=describe_normaliser(segmenter),
        warnings=warnings,
    )


def _base_token_bytes() -> Any:
    from toklab.segmenters.base import Segmenter

    return Segmenter.token_bytes


# --- documents from a corpus, and the check before training -------------------------------------------


def corpus_documents(corpus: "Corpus", part: str = "val", docs: int | None = None, max_bytes: int | None = None) -> list[Any]:
    """The first `docs` non-empty documents of a corpus's `part` (val, train or all), stopping
    after the one that takes the total to `max_bytes`."""
    if part not in ("val", "train", "all"):
        raise ToklabError(f"unknown part '{part}' (use val, train or all)")
    if docs is not None and docs < 1:
        raise ToklabError(f"--docs must be at least 1, got {docs}")
    out, total = [], 0
    stream = corpus.val() if part == "val" else corpus.train() if part == "train" else iter(corpus)
    for doc in stream:
        if not doc.text:
            continue
        out.append(doc)
        total += doc.n_bytes
        if (docs is not None and len(out) >= docs) or (max_bytes is not None and total >= max_bytes):
            break
    if not out:
        raise ToklabError(f"the {part} part of {corpus.spec} has no documents to audit")
    return out


def audited_segmenter(segmenter: "Segmenter") -> "Segmenter | None":
    """What a training run's byte accounting rests on: the segmenter itself, or for a patch model
    the segmenter whose token boundaries make its patches; None for a patcher over bytes alone
    (static, space, entropy), whose bytes are the text's."""
    from toklab.segmenters.patchers import PatchedBytes, SegmenterPatcher

    if isinstance(segmenter, PatchedBytes):
        return segmenter.patcher.segmenter if isinstance(segmenter.patcher, SegmenterPatcher) else None
    return segmenter


def training_audit(segmenter: "Segmenter", corpus: "Corpus", allow_lossy: bool = False) -> dict[str, Any]:
    """Audit a segmenter on the first TRAINING_DOCS validation documents (about TRAINING_BYTES)
    before a run trains on it, and say what was found (for run.json and the study's notes). A
    failed audit is a one-line ToklabError unless `allow_lossy`."""
    target = audited_segmenter(segmenter)
    if target is None:
        return {"passed": True, "segmenter": segmenter.spec, "note": "a patcher over bytes: the bytes are the text's, nothing to audit"}
    result = audit(target, corpus_documents(corpus, "val", TRAINING_DOCS, TRAINING_BYTES))
    record: dict[str, Any] = {"passed": result.passed, "segmenter": target.spec, "documents": result.documents, "bytes": result.bytes}
    if result.passed:
        return record
    if not allow_lossy:
        raise ToklabError(f"{target.spec} fails the byte-accounting audit ({result.failed()}), so its bits-per-byte would be wrong; pass --allow-lossy to train anyway")
    return {**record, "allow_lossy": True, "failed": result.failed()}


def training_note(record: dict[str, Any]) -> str | None:
    """The note a run or study adds for an audit that failed and was let through; None otherwise."""
    if record.get("passed"):
        return None
    return f"--allow-lossy: {record['segmenter']} fails the byte-accounting audit ({record.get('failed')}); its bits-per-byte is not the text's"


def write_audit(result: AuditResult, out_dir: Any, inputs: Sequence[Any] = (), meta: dict[str, Any] | None = None) -> Any:
    """audit.json in `out_dir`, written atomically: a new folder appears whole; in a folder that
    holds an earlier audit only audit.json is replaced; a folder of other files is refused."""
    from pathlib import Path

    from toklab.files import atomic_dir, check_outside, report_dir
    from toklab.outputs import foreign

    final = Path(out_dir)
    check_outside(final, list(inputs))
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not (final / AUDIT_FILE).is_file())):
        raise foreign(final, "audit")
    with (report_dir(final) if final.exists() else atomic_dir(final)) as tmp:
        payload = {**(meta or {}), **result.to_json()}
        (tmp / AUDIT_FILE).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return final



def default_out(corpus: "Corpus", spec: str, part: str = "val", docs: int | None = None) -> Any:
    """reports/audit-<corpus>-<segmenter>, then the part and the number of documents when not the defaults."""
    from toklab.files import default_output

    return default_output("audit", corpus.label, spec, "" if part == "val" else part, "" if docs in (None, DEFAULT_DOCS) else f"{docs}docs")
