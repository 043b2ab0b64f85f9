"""Streaming readers: one record generator per storage format, and one conversion of records to `Document`s.

Every reader streams (a batch of rows or one line at a time), so memory stays bounded
whatever the size of the input. Bad data is counted in `ReadStats` rather than crashing;
what cannot be read at all raises `ToklabError` naming the file.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from toklab.corpus.document import Document
from toklab.errors import ToklabError, one_line
from toklab.network import hub_offline_reason

# Suffix -> reader kind. Longer suffixes first so ".jsonl.gz" is not taken for ".gz".
SHARD_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".jsonl.zst", "jsonl"),
    (".jsonl.gz", "jsonl"),
    (".jsonl", "jsonl"),
    (".parquet", "parquet"),
    (".txt", "text"),
)
MALFORMED_EXAMPLES = 5
PARQUET_BATCH_ROWS = 512
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
UTF8_BOM = b"\xef\xbb\xbf"
FIELD_LOOKAHEAD = 1000  # lines without the text field after which, if they are most lines, the field is wrong


@dataclass(frozen=True)
class CorpusOptions:
    """How to read a corpus. Every command that reads one takes these options."""

    text_field: str = "text"
    id_field: str | None = None  # None: the "id" field when present, else the document's location
    source_field: str = "source"
    lines: bool = False  # .txt: one document per line instead of one per file
    name: str | None = None  # Hugging Face dataset config
    split: str | None = None  # Hugging Face dataset split (default "train")
    max_docs: int | None = None
    max_bytes: int | None = None
    sample: float = 1.0  # keep this fraction of documents, chosen by a hash of (seed, id)
    seed: int = 0
    val_fraction: float = 0.1
    strict: bool = False  # malformed JSON lines are an error instead of being skipped

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ToklabError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.sample <= 1.0:
            raise ToklabError(f"--sample must be in (0, 1], got {self.sample}")
        for name in ("max_docs", "max_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ToklabError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if not self.text_field:
            raise ToklabError("--text-field must not be empty")


@dataclass
class ReadStats:
    """What a pass over a corpus saw, including everything it skipped or repaired."""

    documents: int = 0
    bytes: int = 0
    files: int = 0
    empty_skipped: int = 0
    invalid_utf8: int = 0  # documents decoded with U+FFFD replacement
    malformed_lines: int = 0
    malformed_examples: list[str] = field(default_factory=list)  # "file:line" of the first few

    def notes(self) -> list[str]:
        """One human-readable line per kind of problem seen; empty when the input was clean."""
        notes = []
        if self.empty_skipped:
            notes.append(f"{_count(self.empty_skipped, 'empty document')} skipped")
        if self.invalid_utf8:
            notes.append(f"{_count(self.invalid_utf8, 'document')} with invalid UTF-8, decoded with replacement")
        if self.malformed_lines:
            where = ", ".join(self.malformed_examples)
            more = "" if self.malformed_lines <= len(self.malformed_examples) else ", ..."
            notes.append(f"{_count(self.malformed_lines, 'malformed line')} skipped (at {where}{more})")
        return notes


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@dataclass
class _Context:
    """Per-file state shared by the record-to-document conversion."""

    options: CorpusOptions
    stats: ReadStats
    label: str  # how errors name the input
    default_source: str


def decode_text(data: bytes, stats: ReadStats) -> str:
    """UTF-8 decode; invalid sequences become U+FFFD and the document is counted."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8 += 1
        return data.decode("utf-8", errors="replace")


def replace_lone_surrogates(value: Any) -> tuple[Any, bool]:
    """`value` with every lone surrogate in its strings (dict keys and nested lists and dicts too)
    made U+FFFD, as invalid UTF-8 is; and whether anything changed."""
    if isinstance(value, str):
        if LONE_SURROGATE.search(value) is None:
            return value, False
        return LONE_SURROGATE.sub("\ufffd", value), True
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            key, key_changed = replace_lone_surrogates(key)
            item, item_changed = replace_lone_surrogates(item)
            out[key] = item
            changed = changed or key_changed or item_changed
        return (out, True) if changed else (value, False)
    if isinstance(value, (list, tuple)):
        items = [replace_lone_surrogates(item) for item in value]
        if not any(changed for _, changed in items):
            return value, False
        return type(value)(item for item, _ in items), True
    return value, False


def not_a_regular_file(path: Path) -> str | None:
    """Why `path` cannot be read as a shard although it exists (a FIFO, a device, a socket), or None.

    `Path.is_file()` is False for these, so without this they read as missing."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    kind = next((name for test, name in kinds.items() if test(mode)), None)
    if kind is None:
        return None
    return f"{path} is {kind}, not a regular file (--corpus takes shard files, folders, globs, datasets or recipes)"


def _malformed(ctx: _Context, line: int, why: str) -> None:
    if ctx.options.strict:
        raise ToklabError(f"{ctx.label}:{line}: {why} (drop --strict to skip such lines)")
    ctx.stats.malformed_lines += 1
    if len(ctx.stats.malformed_examples) < MALFORMED_EXAMPLES:
        ctx.stats.malformed_examples.append(f"{ctx.label}:{line}")


def _missing_field(ctx: _Context, kind: str, wanted: str, present: Iterable[str], flag: str, line: int | None = None, extent: str = "") -> ToklabError:
    fields = ", ".join(present) or "(none)"
    where = ctx.label if line is None else f"{ctx.label}:{line}"
    return ToklabError(f"{where}: no {kind} field '{wanted}'{extent}; fields are: {fields} (choose one with {flag})")


def check_fields(ctx: _Context, columns: list[str]) -> None:
    """Fail early, naming what exists, when the configured text or id field is absent."""
    if ctx.options.text_field not in columns:
        raise _missing_field(ctx, "text", ctx.options.text_field, columns, "--text-field")
    if ctx.options.id_field is not None and ctx.options.id_field not in columns:
        raise _missing_field(ctx, "id", ctx.options.id_field, columns, "--id-field")


def _holds_text(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _holds_text(kind.value_type)
    checks = [pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary, pa.types.is_null]
    checks += [getattr(pa.types, name) for name in ("is_string_view", "is_binary_view") if hasattr(pa.types, name)]
    return any(check(kind) for check in checks)


def check_text_type(ctx: _Context, schema: Any) -> None:
    """Fail early when the text column of an arrow schema holds no strings (numbers, lists, ...)."""
    kinds = [f.type for f in schema if f.name == ctx.options.text_field]
    if kinds and not _holds_text(kinds[0]):
        raise ToklabError(f"{ctx.label}: column '{ctx.options.text_field}' holds {kinds[0]}, not strings; pick another with --text-field")


def to_document(record: dict[str, Any], location: str, ctx: _Context, line: int | None = None, *, keep_empty: bool = False) -> Document | None:
    """Turn one raw record into a Document, or None when it is malformed or empty (and counted);
    `keep_empty` returns empty documents instead, uncounted, for callers that account for them."""
    opts = ctx.options
    if opts.text_field not in record or (opts.id_field is not None and opts.id_field not in record):
        check_fields(ctx, list(record))
    text = record[opts.text_field]
    if isinstance(text, (bytes, bytearray)):
        text = decode_text(bytes(text), ctx.stats)
    elif text is None:
        text = ""
    elif not isinstance(text, str):
        _malformed(ctx, line or 0, f"field '{opts.text_field}' holds {type(text).__name__}, not text")
        return None
    if not text and not keep_empty:
        ctx.stats.empty_skipped += 1
        return None
    id_key = opts.id_field or ("id" if record.get("id") is not None else None)
    doc_id = str(record[id_key]) if id_key is not None else location
    source = record.get(opts.source_field)
    source = str(source) if source is not None else ctx.default_source
    skip = {opts.text_field, opts.source_field, id_key}
    meta = {k: v for k, v in record.items() if k not in skip}
    return Document(id=doc_id, text=text, source=source, meta=meta)


# --- file formats ------------------------------------------------------------------------


def shard_kind(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, kind in SHARD_SUFFIXES:
        if name.endswith(suffix):
            return kind
    return None


# Every format has a record reader yielding (location, line, record): `location` becomes the id of
# a record without one, `line` (jsonl/text lines) is where a malformed record gets reported.
Record = tuple[str, "int | None", dict[str, Any]]


def parquet_batches(path: Path, ctx: _Context, batch_size: int = PARQUET_BATCH_ROWS) -> Iterator[Any]:
    """The shard's arrow record batches, after checking its fields; a corrupt shard is an error naming it."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt footer
        raise ToklabError(f"cannot read parquet shard {ctx.label}: {one_line(exc)}") from None
    check_fields(ctx, parquet.schema_arrow.names)
    check_text_type(ctx, parquet.schema_arrow)
    batches = parquet.iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise ToklabError(f"cannot read parquet shard {ctx.label}: {one_line(exc)}") from None
        yield batch


def parquet_records(path: Path, ctx: _Context, location: str) -> Iterator[Record]:
    row = 0
    for batch in parquet_batches(path, ctx):
        for record in batch.to_pylist():
            yield f"{location}:{row}", None, record
            row += 1


class _ZstdFrames(io.RawIOBase):
    """Decompress every zstd frame of a file, and fail on a truncated one.

    zstandard's own stream reader ends quietly at a cut frame; a cut shard must be an error.
    """

    def __init__(self, path: Path) -> None:
        import zstandard

        self._raw = open(path, "rb")
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._pending = b""  # decompressed bytes not yet handed out, from self._offset on
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._offset == len(self._pending):
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._in_frame:
                    raise EOFError("compressed file ended before the end of its last zstd frame")
                return 0
            out = []
            while chunk:
                self._in_frame = True
                out.append(self._obj.decompress(chunk))
                if not self._obj.eof:
                    break
                chunk, self._in_frame = self._obj.unused_data, False
                self._obj = self._dctx.decompressobj()
            self._pending, self._offset = b"".join(out), 0
        n = min(len(buffer), len(self._pending) - self._offset)
        buffer[:n] = memoryview(self._pending)[self._offset : self._offset + n]
        self._offset += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_binary(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdFrames(path), buffer_size=1 << 20)
    return open(path, "rb")


# Public names for code outside the corpus layer (filter reads shard by shard); the private ones stay.
ReadContext = _Context
open_binary = _open_binary


def _lines(path: Path, ctx: _Context) -> Iterator[tuple[int, bytes]]:
    """Numbered raw lines, read a buffer at a time; decompression errors name the file."""
    import zstandard

    try:
        with _open_binary(path) as stream:
            for number, line in enumerate(stream, start=1):
                yield number, line
    except (OSError, EOFError, ValueError, zstandard.ZstdError) as exc:
        raise ToklabError(f"cannot read {ctx.label}: {one_line(exc)}") from None


def _missing_required(record: dict[str, Any], options: CorpusOptions) -> tuple[str, str, str] | None:
    """(kind, field, flag) of the first configured field `record` lacks, or None."""
    if options.text_field not in record:
        return "text", options.text_field, "--text-field"
    if options.id_field is not None and options.id_field not in record:
        return "id", options.id_field, "--id-field"
    return None


def jsonl_records(path: Path, ctx: _Context, location: str) -> Iterator[Record]:
    """Every JSON object line; malformed lines are counted and skipped.

    A few lines without the text field (or an explicit --id-field) are malformed too. When most
    lines lack it (judged at the end of the file, or once FIELD_LOOKAHEAD lines lack it), the
    field itself is wrong: an error naming it. Until a line has the field, bad lines are held back
    uncounted, so that a wrong field is an error and nothing else.
    """
    opts = ctx.options
    held: list[tuple[int, str]] = []  # (line, why) of malformed lines not yet counted, in order
    first_missing: tuple[str, str, list[str], str] | None = None  # for the wrong-field error
    fields_seen = False
    objects = missing_lines = 0

    def wrong_field(first: bool = False) -> ToklabError:
        assert first_missing is not None
        extent = "" if not fields_seen else f" in {missing_lines:,} of {'the first ' if first else ''}{objects:,} lines"
        return _missing_field(ctx, *first_missing, extent=extent)

    for number, raw in _lines(path, ctx):
        if number == 1 and raw.startswith(UTF8_BOM):
            raw = raw[len(UTF8_BOM) :]
        if raw.isspace() or not raw:  # isspace() does not copy a long line, strip() would
            continue
        repaired_before = ctx.stats.invalid_utf8
        why = None
        try:
            record = json.loads(decode_text(raw, ctx.stats))
        except json.JSONDecodeError as exc:
            why = f"malformed JSON ({exc.msg})"
        else:
            if not isinstance(record, dict):
                why = f"a JSON line must be an object, not {type(record).__name__}"
        if why is not None:
            if held:
                held.append((number, why))
            else:
                _malformed(ctx, number, why)
            continue
        objects += 1
        missing = _missing_required(record, opts)
        if missing is not None:
            kind, name, flag = missing
            if opts.strict:
                raise _missing_field(ctx, kind, name, record, flag, line=number)
            missing_lines += 1
            first_missing = first_missing or (kind, name, list(record), flag)
            if missing_lines >= FIELD_LOOKAHEAD and 2 * missing_lines > objects:
                raise wrong_field(first=True)
            if fields_seen:
                _malformed(ctx, number, f"no {kind} field '{name}'")
            else:
                held.append((number, f"no {kind} field '{name}'"))
            continue
        if not fields_seen:
            fields_seen = True
            for line, reason in held:
                _malformed(ctx, line, reason)
            held = []
        if b"\\ud" in raw or b"\\uD" in raw:  # only JSON escapes make lone surrogates
            record, changed = replace_lone_surrogates(record)
            if changed and ctx.stats.invalid_utf8 == repaired_before:  # one count per document
                ctx.stats.invalid_utf8 += 1
        yield f"{location}:{number}", number, record
    if first_missing is not None and 2 * missing_lines > objects:
        raise wrong_field()


def _without_bom(data: bytes) -> bytes:
    """A leading UTF-8 byte order mark is an encoding signature, not text."""
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


def text_records(path: Path, ctx: _Context, location: str) -> Iterator[Record]:
    if not ctx.options.lines:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ToklabError(f"cannot read {ctx.label}: {exc.strerror}") from None
        yield location, None, {ctx.options.text_field: decode_text(_without_bom(data), ctx.stats)}
        return
    for number, raw in _lines(path, ctx):
        if number == 1:
            raw = _without_bom(raw)
        yield f"{location}:{number}", None, {ctx.options.text_field: decode_text(raw.rstrip(b"\r\n"), ctx.stats)}




# --- Hugging Face datasets -----------------------------------------------------------------


def is_saved_dataset(path: Path) -> bool:
    """A directory written by `datasets`' `save_to_disk` (a Dataset or a DatasetDict)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _rows(dataset: Any, location: str) -> Iterator[Record]:
    for row, record in enumerate(dataset):
        yield f"{location}:{row}", None, record


def saved_dataset_records(path: Path, ctx: _Context, location: str) -> Iterator[Record]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise ToklabError(f"cannot load saved dataset {ctx.label}: {one_line(exc)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        split = ctx.options.split or ("train" if "train" in loaded else None)
        if split not in loaded:
            raise ToklabError(f"{ctx.label}: choose a split with --split; it has: {', '.join(loaded)}")
        loaded = loaded[split]
    check_fields(ctx, list(loaded.column_names))
    check_text_type(ctx, loaded.data.schema)
    # Arrow-backed and memory-mapped: iterating touches one batch at a time.
    yield from _rows(loaded, location)


def streaming_records(path_or_id: str, ctx: _Context, location: str) -> Iterator[Record]:
    """A dataset read through `datasets.load_dataset(..., streaming=True)`: a hub id or a local folder."""
    import datasets

    if not Path(path_or_id).exists():
        reason = hub_offline_reason()
        if reason is not None:
            raise ToklabError(
                f"cannot stream hub dataset '{path_or_id}' (no local path of that name exists): this machine is "
                f"offline ({reason}); download its parquet/jsonl shards elsewhere and pass --corpus PATH (a file, folder or glob)"
            )
    split = ctx.options.split or "train"
    try:
        stream = datasets.load_dataset(path_or_id, ctx.options.name, split=split, streaming=True)
        rows = iter(stream)
        first = next(rows, None)
    except Exception as exc:
        raise ToklabError(f"cannot stream dataset '{path_or_id}': {one_line(exc)}") from None
    if first is None:
        return
    check_fields(ctx, list(first))

    def chained() -> Iterator[dict[str, Any]]:
        yield first
        yield from rows

    yield from _rows(chained(), location)


RECORD_READERS = {
    "parquet": parquet_records,
    "jsonl": jsonl_records,
    "text": text_records,
    "saved": saved_dataset_records,
    "stream": streaming_records,
}


def documents_of(records: Iterable[Record], ctx: _Context) -> Iterator[Document]:
    """The documents among raw records; empty and malformed ones are counted in `ctx.stats`."""
    for location, line, record in records:
        doc = to_document(record, location, ctx, line=line)
        if doc is not None:
            yield doc
