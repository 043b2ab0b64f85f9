"""Shard writers: size-capped parquet (zstd) and .jsonl.zst shards, each renamed into place when whole.

`ShardFile` writes one shard file: under a hidden temporary name, renamed into place only once it
is complete, so an interrupted run never leaves a half-written shard under a final name. Memory
stays bounded: rows go out in row groups (parquet) or a stream (jsonl.zst). `ShardWriter` cuts a
record stream into size-capped shards `{prefix}-{index:05d}{suffix}`, a `ShardFile` each; it
writes lone surrogates, which UTF-8 cannot hold, as U+FFFD (as the readers do) and counts them in
`repaired`. toklab.filter writes its one output per input shard through a `ShardFile` too."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from toklab.corpus.document import Document
from toklab.corpus.readers import LONE_SURROGATE, replace_lone_surrogates
from toklab.errors import ToklabError
from toklab.files import temp_name

DEFAULT_SHARD_BYTES = 256 * 2**20
ROW_GROUP_BYTES = 16 * 2**20
FORMATS = ("parquet", "jsonl.zst")
DEFAULT_LEVELS = {"parquet": 6, "jsonl.zst": 3}  # zstd levels


def _record(item: Document | Mapping[str, Any]) -> dict[str, Any]:
    return item.to_record() if isinstance(item, Document) else dict(item)


def _approx_bytes(record: Mapping[str, Any]) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in record.values())


class ShardFile:
    """One shard file, parquet (zstd) from arrow tables or .jsonl.zst from bytes, written under a
    hidden temporary name (`tmp`) and renamed to `final` by `close`; `abort` drops it. The parquet
    writer opens on the first table, with that table's schema; the zstd stream on the first bytes
    (or at `open`). OSErrors pass through: callers word them."""

    def __init__(self, final: Path, fmt: str, compression_level: int | None = None) -> None:
        if fmt not in FORMATS:
            raise ToklabError(f"unknown shard format '{fmt}' (use parquet or jsonl.zst)")
        self.final = Path(final)
        self.fmt = fmt
        self.compression_level = DEFAULT_LEVELS[fmt] if compression_level is None else compression_level
        self.tmp = temp_name(self.final)
        self.rows = 0
        self._writer: Any = None  # pq.ParquetWriter
        self._file: Any = None  # the .jsonl.zst temporary file, and its zstd stream
        self._stream: Any = None

    @property
    def schema(self) -> Any:
        """The parquet file's arrow schema, once its first table is in (else None)."""
        return self._writer.schema if self._writer is not None else None

    def open(self) -> None:
        """Create the .jsonl.zst temporary file and its zstd stream now rather than at the first
        bytes (a parquet file waits for its first table, which gives the schema)."""
        if self.fmt == "jsonl.zst" and self._stream is None:
            import zstandard

            self._file = open(self.tmp, "wb")
            self._stream = zstandard.ZstdCompressor(level=self.compression_level).stream_writer(self._file, closefd=False)

    def write_table(self, table: Any) -> None:
        """Parquet: the first table fixes the schema (an empty one too); rows go out as a row group."""
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd", compression_level=self.compression_level)
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def write_bytes(self, data: bytes, rows: int = 1) -> None:
        """.jsonl.zst: `data` (whole lines, `rows` of them) into the zstd stream."""
        self.open()
        self._stream.write(data)
        self.rows += rows

    def close(self, empty_schema: Any = None) -> int:
        """Finish the file and rename it into place; returns its size. A parquet file with no table
        written gets `empty_schema` (no rows), and without one no file is written: returns 0."""
        if self.fmt == "jsonl.zst":
            self.open()  # no bytes written: still a valid (empty) zstd frame
            try:
                self._stream.close()  # writes the zstd frame end
            finally:
                self._file.close()
        else:
            if self._writer is None:
                if empty_schema is None:
                    return 0
                self.write_table(empty_schema.empty_table())
            self._writer.close()
        os.replace(self.tmp, self.final)
        return self.final.stat().st_size

    def abort(self) -> None:
        """Close quietly and remove the temporary; a file already renamed into place stays."""
        for handle in (self._writer, self._stream, self._file):
            try:
                if handle is not None:
                    handle.close()
            except Exception:
                pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a leftover temporary is removed at the next start


class ShardWriter:
    """Base class: splits a stream of records into shards of about `max_shard_bytes` (uncompressed),
    each a `ShardFile`."""

    suffix = ""
    fmt = ""

    def __init__(self, out_dir: str | os.PathLike, prefix: str = "shard", max_shard_bytes: int = DEFAULT_SHARD_BYTES, start_index: int = 0, compression_level: int | None = None) -> None:
        if max_shard_bytes <= 0:
            raise ToklabError(f"shard size must be positive, got {max_shard_bytes}")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_shard_bytes = max_shard_bytes
        self.compression_level = compression_level
        self.index = start_index
        self.paths: list[Path] = []  # completed shards, in order
        self.records = 0
        self.repaired = 0  # records whose lone surrogates were written as U+FFFD
        self._file: ShardFile | None = None  # the shard in progress
        self._shard_bytes = 0

    # Subclasses implement these: a new shard begins, a record goes in, pending rows go out.
    def _open(self) -> None:
        pass

    def _append(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        pass

    def write(self, item: Document | Mapping[str, Any]) -> None:
        record = _record(item)
        if self._file is None:
            self._start()
        self._append(record)
        self.records += 1
        self._shard_bytes += _approx_bytes(record)
        if self._shard_bytes >= self.max_shard_bytes:
            self._finish()

    def close(self) -> list[Path]:
        """Finish the open shard and return every completed shard path."""
        if self._file is not None:
            self._finish()
        return self.paths

    def abort(self) -> None:
        """Drop the shard in progress; completed shards stay."""
        if self._file is not None:
            file, self._file = self._file, None
            file.abort()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._file = ShardFile(self.out_dir / f"{self.prefix}-{self.index:05d}{self.suffix}", self.fmt, self.compression_level)
        self._shard_bytes = 0
        self._open()

    def _finish(self) -> None:
        assert self._file is not None
        self._flush()
        self._file.close()
        self.paths.append(self._file.final)
        self.index += 1
        self._file = None


class ParquetShardWriter(ShardWriter):
    """Parquet shards compressed with zstd; a change of columns starts a new shard."""

    suffix = ".parquet"
    fmt = "parquet"

    def __init__(self, *args: Any, compression_level: int = 6, **kwargs: Any) -> None:
        super().__init__(*args, compression_level=compression_level, **kwargs)
        self._rows: list[dict[str, Any]] = []
        self._rows_bytes = 0
        self._columns: list[str] | None = None

    def _open(self) -> None:
        self._rows, self._rows_bytes = [], 0
        self._columns = None

    def write(self, item: Document | Mapping[str, Any]) -> None:
        record = _record(item)
        if self._file is not None and self._columns is not None and set(record) != set(self._columns):
            self._finish()  # a new set of columns gets a shard of its own rather than being dropped
        super().write(record)

    def _append(self, record: dict[str, Any]) -> None:
        if self._columns is None:
            self._columns = list(record)
        self._rows.append(record)
        self._rows_bytes += _approx_bytes(record)
        if self._rows_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        assert self._file is not None
        if not self._rows:
            return
        schema = self._file.schema
        try:
            table = pa.Table.from_pylist(self._rows, schema=schema)
        except UnicodeEncodeError:  # a lone surrogate somewhere: repair the rows (rare, so only now)
            repaired = [replace_lone_surrogates(row) for row in self._rows]
            self.repaired += sum(changed for _, changed in repaired)
            table = pa.Table.from_pylist([row for row, _ in repaired], schema=schema)
        self._file.write_table(table)
        self._rows, self._rows_bytes = [], 0


class JsonlZstShardWriter(ShardWriter):
    """One JSON object per line, zstd-compressed as a stream."""

    suffix = ".jsonl.zst"
    fmt = "jsonl.zst"

    def __init__(self, *args: Any, compression_level: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, compression_level=compression_level, **kwargs)

    def _append(self, record: dict[str, Any]) -> None:
        assert self._file is not None
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        try:
            data = line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, in a key or a value: JSON holds it as is
            self.repaired += 1
            data = LONE_SURROGATE.sub("\ufffd", line).encode("utf-8")
        self._file.write_bytes(data)


def shard_writer(out_dir: str | os.PathLike, fmt: str = "parquet", **kwargs: Any) -> ShardWriter:
    """A writer for `fmt`: "parquet" or "jsonl.zst"."""
    writers = {"parquet": ParquetShardWriter, "jsonl.zst": JsonlZstShardWriter}
    if fmt not in writers:
        raise ToklabError(f"unknown shard format '{fmt}' (use parquet or jsonl.zst)")
    return writers[fmt](out_dir, **kwargs)
