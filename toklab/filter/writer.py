"""One output shard of the filter (kept or rejected), under the input's own name.

The file itself (temporary name, zstd parquet or .jsonl.zst, rename when whole) is
corpus.writers' ShardFile, as for the size-capped ShardWriter; what is filter's own is here: rows
picked from an arrow batch or from records, with the ratio (and reason) columns added, and an
OSError worded as a ToklabError that names the shard.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from toklab.corpus.writers import ShardFile
from toklab.filter.oserrors import cannot_write
from toklab.filter.rule import REASON_COLUMN


class ShardOut:
    """One output shard, written under a temporary name and renamed into place when whole. An
    OSError while writing (a full disk, a read-only folder) becomes a ToklabError naming the shard."""

    def __init__(self, final: Path, fmt: str, schema: Any = None) -> None:
        self.final, self.fmt, self.schema = final, fmt, schema
        self._file = ShardFile(final, fmt)
        self.tmp = self._file.tmp
        with self._writing():
            final.parent.mkdir(parents=True, exist_ok=True)
            self._file.open()  # a .jsonl.zst temporary exists from the start

    @property
    def rows(self) -> int:
        return self._file.rows

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
                self._file.write_bytes("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode("utf-8"), rows=len(rows))
            return
        import pyarrow as pa

        self._parquet(pa.Table.from_pylist(rows, schema=self._file.schema))

    def _parquet(self, table: Any) -> None:
        with self._writing():
            self._file.write_table(table)

    def close(self, empty_schema: Any = None) -> int:
        """Finish and rename into place; returns the file's size (0 when nothing was written: a
        records-to-parquet shard with no rows and no known schema gets no file)."""
        with self._writing():
            return self._file.close(empty_schema)

    def abort(self) -> None:
        self._file.abort()


def with_columns(schema: Any, names: list[str]) -> Any:
    """`schema` with `names` appended (replacing same-named fields): the ratio column, the reason."""
    import pyarrow as pa

    for name in names:
        if name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
        schema = schema.append(pa.field(name, pa.string() if name == REASON_COLUMN else pa.float64()))
    return schema
