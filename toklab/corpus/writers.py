"""Shard writers: size-capped parquet (zstd) and .jsonl.zst shards, each renamed into place when whole.

A shard is written under a hidden temporary name and renamed to `{prefix}-{index:05d}{suffix}`
only once it is complete, so an interrupted run never leaves a half-written shard under a
final name. Memory stays bounded: rows go out in row groups (parquet) or a stream (jsonl.zst).
Lone surrogates, which UTF-8 cannot hold, are written as U+FFFD (as the readers do), and counted
in `repaired`.
"""

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


def _record(item: Document | Mapping[str, Any]) -> dict[str, Any]:
    return item.to_record() if isinstance(item, Document) else dict(item)


def _approx_bytes(record: Mapping[str, Any]) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in record.values())


class ShardWriter:
    """Base class: splits a stream of records into shards of about `max_shard_bytes` (uncompressed)."""

    suffix = ""

    def __init__(self, out_dir: str | os.PathLike, prefix: str = "shard", max_shard_bytes: int = DEFAULT_SHARD_BYTES, start_index: int = 0) -> None:
        if max_shard_bytes <= 0:
            raise ToklabError(f"shard size must be positive, got {max_shard_bytes}")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_shard_bytes = max_shard_bytes
        self.index = start_index
        self.paths: list[Path] = []  # completed shards, in order
        self.records = 0
        self.repaired = 0  # records whose lone surrogates were written as U+FFFD
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._shard_bytes = 0

    # Subclasses implement these three against an open temporary file.
    def _open(self, tmp: Path) -> None:
        raise NotImplementedError

    def _append(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def write(self, item: Document | Mapping[str, Any]) -> None:
        record = _record(item)
        if self._tmp is None:
            self._start()
        self._append(record)
        self.records += 1
        self._shard_bytes += _approx_bytes(record)
        if self._shard_bytes >= self.max_shard_bytes:
            self._finish()

    def close(self) -> list[Path]:
        """Finish the open shard and return every completed shard path."""
        if self._tmp is not None:
            self._finish()
        return self.paths

    def abort(self) -> None:
        """Drop the shard in progress; completed shards stay."""
        if self._tmp is not None:
            try:
                self._close()
            finally:
                self._tmp.unlink(missing_ok=True)
                self._tmp = self._final = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._final = self.out_dir / f"{self.prefix}-{self.index:05d}{self.suffix}"
        self._tmp = temp_name(self._final)
        self._shard_bytes = 0
        self._open(self._tmp)

    def _finish(self) -> None:
        assert self._tmp is not None and self._final is not None
        self._close()
        os.replace(self._tmp, self._final)
        self.paths.append(self._final)
        self.index += 1
        self._tmp = self._final = None


class ParquetShardWriter(ShardWriter):
    """Parquet shards compressed with zstd; a change of columns starts a new shard."""

    suffix = ".parquet"

    def __init__(self, *args: Any, compression_level: int = 6, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compression_level = compression_level
        self._writer: Any = None
        self._rows: list[dict[str, Any]] = []
        self._rows_bytes = 0
        self._columns: list[str] | None = None

    def _open(self, tmp: Path) -> None:
        self._tmp_path = tmp
        self._writer = None
        self._columns = None

    def write(self, item: Document | Mapping[str, Any]) -> None:
        record = _record(item)
        if self._tmp is not None and self._columns is not None and set(record) != set(self._columns):
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
        import pyarrow.parquet as pq

        if not self._rows:
            return
        schema = self._writer.schema if self._writer is not None else None
        try:
            table = pa.Table.from_pylist(self._rows, schema=schema)
        except UnicodeEncodeError:  # a lone surrogate somewhere: repair the rows (rare, so only now)
            repaired = [replace_lone_surrogates(row) for row in self._rows]
            self.repaired += sum(changed for _, changed in repaired)
            table = pa.Table.from_pylist([row for row, _ in repaired], schema=schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp_path, table.schema, compression="zstd", compression_level=self.compression_level)
        self._writer.write_table(table)
        self._rows, self._rows_bytes = [], 0

    def _close(self) -> None:
        try:
            self._flush()
        finally:
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            self._rows, self._rows_bytes = [], 0


class JsonlZstShardWriter(ShardWriter):
    """One JSON object per line, zstd-compressed as a stream."""

    suffix = ".jsonl.zst"

    def __init__(self, *args: Any, compression_level: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compression_level = compression_level
        self._file: Any = None
        self._stream: Any = None

    def _open(self, tmp: Path) -> None:
        import zstandard

        self._file = open(tmp, "wb")
        self._stream = zstandard.ZstdCompressor(level=self.compression_level).stream_writer(self._file, closefd=False)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        try:
            data = line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, in a key or a value: JSON holds it as is
            self.repaired += 1
            data = LONE_SURROGATE.sub("\ufffd", line).encode("utf-8")
        self._stream.write(data)

    def _close(self) -> None:
        try:
            self._stream.close()  # writes the zstd frame end
        finally:
            self._file.close()


def shard_writer(out_dir: str | os.PathLike, fmt: str = "parquet", **kwargs: Any) -> ShardWriter:
    """A writer for `fmt`: "parquet" or "jsonl.zst"."""
    writers = {"parquet": ParquetShardWriter, "jsonl.zst": JsonlZstShardWriter}
    if fmt not in writers:
        raise ToklabError(f"unknown shard format '{fmt}' (use parquet or jsonl.zst)")
    return writers[fmt](out_dir, **kwargs)
