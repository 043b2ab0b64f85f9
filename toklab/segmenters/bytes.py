"""`bytes`: one token per UTF-8 byte (ids 0-255) plus <|endoftext|> (id 256)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from toklab.errors import ToklabError
from toklab.segmenters.base import CUT_ANYWHERE, EOT, Segmenter


class ByteSegmenter(Segmenter):
    kind = "bytes"
    summary = "UTF-8 bytes: ids 0-255 are the byte values, 256 is <|endoftext|>"
    cut_rule = CUT_ANYWHERE  # a character's bytes do not depend on its neighbours
    arrays_native = True  # the ids are the UTF-8 bytes: an array straight from the buffer

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        if arg is not None:
            raise ToklabError("'bytes' takes no arguments")
        if options:
            raise ToklabError(f"'bytes' takes no options (got {', '.join(sorted(options))})")

    @classmethod
    def from_spec(cls, arg: str | None, **options: str) -> "ByteSegmenter":
        cls.check_spec(arg, options)
        return cls()

    @property
    def vocab_size(self) -> int:
        return 257

    @property
    def special_tokens(self) -> dict[str, int]:
        return {EOT: 256}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        # Encoding is one C call per text; a process pool would only add pickling.
        return [list(t.encode("utf-8")) for t in texts]

    def _encode_pieces(self, pieces: list[str], workers: int | None = None) -> list[list[int]]:
        return [list(p.encode("utf-8")) for p in pieces]

    def _piece_arrays(self, pieces: list[str], workers: int | None = None) -> list[np.ndarray]:
        return [np.frombuffer(p.encode("utf-8"), dtype=np.uint8).astype(np.int64) for p in pieces]

    def decode(self, ids: Sequence[int]) -> str:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()  # bytes() of an array would copy its memory, not its values
        try:
            data = bytes(ids)
        except ValueError:  # <|endoftext|> (256) stands for no bytes
            data = bytes(i for i in ids if i < 256)
        return data.decode("utf-8", errors="replace")

    def _byte_lengths(self) -> np.ndarray:
        lengths = np.ones(257, dtype=np.int64)
        lengths[256] = 0
        return lengths

    def token_bytes(self, token_id: int) -> bytes:
        return bytes([token_id]) if token_id < 256 else b""

    def _save_files(self, directory: Path) -> None:
        pass  # nothing beyond the manifest

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "ByteSegmenter":
        return cls()
