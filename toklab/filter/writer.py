"""One output shard of the filter (kept or rejected): written under a temporary name, renamed when whole.

Not corpus.writers' ShardWriter: that one cuts a record stream into size-capped shards named
{prefix}-{index}, from records, with its own row groups; filter writes exactly one output per input
shard, under the input's own name, arrow batch by arrow batch, and its bytes must stay the same.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from toklab.files import temp_name
from toklab.filter.oserrors import cannot_write
from toklab.filter.rule import REASON_COLUMN


class ShardOut:
    """One output shard, written under a temporary name and renamed into place when whole. An
    OSError while writing (a full disk, a read-only folder) becomes a ToklabError naming the shard."""

    def __init__(self, final: Path, fmt: str, schema: Any = None) -> None:
        self.final, self.fmt, self.schema = final, fmt, schema
        self.tmp = temp_name(final)
        self.rows = 0
        self._writer: Any = None
        self._file: Any = None
        with self._writing():
            final.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "jsonl.zst":
                import zstandard

                self._file = open(self.tmp, "wb")
                self._writer = zstandard.ZstdCompressor(level=3).stream_writer(self._file, closefd=False)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise cannot_write(self.final, exc) from exc

    def write_arrow(self, batch: Any, take: np.ndarray, columns: dict[str, list[Any]]) -> None:
        """Rows of an arrow batch where `take`, with `columns` added (replacing same-named ones)."""
        import pyarrow as pa

        picked = batch.filter(pa.array(take))
        for name, values in columns.items():
            if name in picked.schema.names:
                picked = picked.drop_columns([name])
            chosen = [v for v, t in zip(values, take) if t]
            picked = picked.append_column(name, pa.array(chosen, type=pa.float64() if name != REASON_COLUMN else pa.string()))
        self._parquet(pa.Table.from_batches([picked]))

    def write_records(self, records: list[dict[str, Any]], take: np.ndarray, columns: dict[str, list[Any]]) -> None:
        rows = [{**r, **{k: v[i] for k, v in columns.items()}} for i, r in enumerate(records) if take[i]]
        if not rows:
            return
        if self.fmt == "jsonl.zst":
            with self._writing():
                self._writer.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode("utf-8"))
            self.rows += len(rows)
            return
        import pyarrow as pa

        self._parquet(pa.Table.from_pylist(rows, schema=self._writer.schema if self._writer is not None else None))

    def _parquet(self, table: Any) -> None:
        import pyarrow.parquet as pq

        with self._writing():
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd", compression_level=6)
            if table.num_rows:
                self._writer.write_table(table)
                self.rows += table.num_rows

    def close(self, empty_schema: Any = None) -> int:
        """Finish and rename into place; returns the file's size (0 when nothing was written)."""
        with self._writing():
            if self.fmt == "jsonl.zst":
                self._writer.close()
                self._file.close()
            elif self._writer is None and empty_schema is not None:
                self._parquet(empty_schema.empty_table())
                self._writer.close()
            elif self._writer is not None:
                self._writer.close()
            else:  # a records-to-parquet shard with no rows and no known schema: no file
                return 0
            os.replace(self.tmp, self.final)
            return self.final.stat().st_size

    def abort(self) -> None:
        for close in (getattr(self._writer, "close", None), getattr(self._file, "close", None)):
            try:
                if close is not None:
                    close()
            except Exception:
                pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass  # removed at the next start


def with_columns(schema: Any, names: list[str]) -> Any:
    """`schema` with `names` appended (replacing same-named fields): the ratio column, the reason."""
    import pyarrow as pa

    for name in names:
        if name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
        schema = schema.append(pa.field(name, pa.string() if name == REASON_COLUMN else pa.float64()))
    return schema
