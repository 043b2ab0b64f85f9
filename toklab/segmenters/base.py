"""The segmenter interface: every way of cutting text into tokens looks like this.

A segmenter maps text to integer ids and back. Every id has a byte length (special tokens: 0),
so the byte span of every token of a document follows from its ids, and every measure
(bytes/token, bits-per-byte, ...) can be computed without knowing the kind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Sequence

from toklab.errors import ToklabError, one_line
from toklab.files import atomic_dir
from toklab.segmenters.options import MAX_VOCAB_SIZE, Option

if TYPE_CHECKING:
    import numpy as np

MANIFEST = "toklab-segmenter.json"
EOT = "<|endoftext|>"  # the one special token every toklab-trained kind reserves
POOL_MIN_TEXTS = 64  # below this a process pool costs more than it saves
# A text longer than this many characters is encoded in exact pieces of about this size by the kinds
# that can be cut (see `Segmenter.cut_rule`). TOKLAB_CUT_CHARS overrides it (benchmarks set it huge to
# measure encoding whole).
CUT_CHARS = int(os.environ.get("TOKLAB_CUT_CHARS") or 1 << 20)
PIECE_GROUP = 8  # pieces of one long text encoded per batch call (the kind's threads share them)
# Where a text may be cut so that a kind's ids are unchanged (`Segmenter.cut_rule`):
CUT_ANYWHERE = "anywhere"  # at any character boundary (the ids of a text are those of its characters)
CUT_NEWLINE = "newline"  # after a newline by `newline_cuts`' rule (pre-tokenising kinds with a known pattern)
CUT_SPACE = "space"  # before a space that follows a non-space, by `space_cuts` (SentencePiece words)
CUT_WORD = "word"  # before a space that follows a letter or digit (str.isalnum): spm models that normalise, hf Llama-style
CUT_STREAM = "stream"  # the kind cuts a long text itself, carrying its state across (`_long_pieces`)
# CUT_WORD never cuts after a Prepend character (UAX #29 GB9b makes it and the space one grapheme cluster),
# after a letter that extends a cluster (Grapheme_Cluster_Break Extend or SpacingMark), or two places after
# a Prepend character: so the letter or digit before the space is a cluster of its own, as hf's Precompiled
# normaliser needs (it may rewrite a short cluster whole: HFTokenizerSegmenter._cut_rule). Fewer cuts keep
# every kind exact. The sets of Unicode 16, and U+11A3A (Prepend in some earlier versions).
PREPEND = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\u0d4e\U000110bd\U000110cd\U000111c2\U000111c3"
                    "\U000113d1\U0001193f\U00011941\U00011a3a\U00011a84\U00011a85\U00011a86\U00011a87\U00011a88\U00011a89\U00011d46\U00011f02")
NO_CUT_AFTER = PREPEND | frozenset("\u0e33\u0eb3\uff9e\uff9f")


@dataclass(frozen=True)
class ReportColumn:
    """One figure a kind adds to its compare rows (see `Segmenter.extra_measures`), as reports show it."""

    key: str  # the column in the compare table
    label: str  # the terminal header ("\n" breaks it; markdown joins the lines)
    format: str  # a toklab.tables format name: "int", "percent", "tflops", or "2f" for two decimals


@dataclass(frozen=True)
class ReportGroup:
    """Columns a kind adds, shown in a compare table of their own under `title`, with `caption`
    saying what the least obvious of them means."""

    title: str
    columns: tuple[ReportColumn, ...]
    caption: str


class SegmenterUnavailable(ToklabError):
    """A well-formed spec whose pretrained vocabulary cannot be had here and now (offline, not
    cached). A run of several segmenters skips it with a note; a single one is an error."""


def newline_cuts(text: str, size: int) -> Iterator[str]:
    """`text` cut into consecutive pieces of at most about `size` characters, each cut right after a
    lone newline between two non-space characters where the next is not "/". Every pre-tokenisation
    pattern toklab uses (bpe's gpt2/cl100k/o200k, and tiktoken's r50k/p50k/cl100k/o200k) ends a
    pre-token there and starts the next at the following character: none has a lookbehind, none
    lets a pre-token run from a non-space through a newline into a non-space, except o200k's
    punctuation run `[^\\s\\p{L}\\p{N}]+[\\r\\n/]*`, which the "/" exception covers. So the
    pre-tokens, and a BPE's ids, of the pieces are those of the whole text (tested against tiktoken
    and tokenizers). A stretch of `size` characters with no such newline is left whole: that piece is
    then as long as the stretch (tiktoken and tokenizers are slow on one very long pre-token)."""

    def safe(i: int) -> bool:  # text[i] is a newline
        return i + 1 < len(text) and not text[i - 1].isspace() and not text[i + 1].isspace() and text[i + 1] != "/"

    return _cuts_at(text, size, "\n", safe, after=1)


def space_cuts(text: str, size: int) -> Iterator[str]:
    """`text` cut into consecutive pieces of at most about `size` characters, each cut right before
    a space whose previous character is not a space: where SentencePiece (spaces as "▁", no dummy
    prefix, no normaliser) starts a word. When no vocabulary piece holds a non-space followed by a
    space, no piece of the encoding crosses such a cut (see `_SentencePieceSegmenter.cut_rule`). A
    stretch of `size` characters with no such space is left whole."""
    return _cuts_at(text, size, " ", lambda i: text[i - 1] != " ", after=0)


def _ends_word(text: str, i: int) -> bool:
    """CUT_WORD's test for the space at i: the character before it is a letter or digit that is a
    grapheme cluster of its own (see NO_CUT_AFTER)."""
    before = text[i - 1]
    return before.isalnum() and before not in NO_CUT_AFTER and (i < 2 or text[i - 2] not in PREPEND)


def _cuts_at(text: str, size: int, mark: str, safe: Callable[[int], bool], after: int) -> Iterator[str]:
    """`text` in consecutive pieces of at most about `size` characters, cut at a `mark` character
    at index i > the piece's start where safe(i): before it (after=0) or after it (after=1); the
    last such place in each window, else the first after it; the rest whole when there is none."""
    start, n = 0, len(text)
    while n - start > size:
        cut = text.rfind(mark, start + 1, start + size)
        while cut != -1 and not safe(cut):
            cut = text.rfind(mark, start + 1, cut)
        if cut == -1:  # no safe cut in this window: take the next one after it
            cut = text.find(mark, start + size)
            while cut != -1 and not safe(cut):
                cut = text.find(mark, cut + 1)
            if cut == -1:
                break
        yield text[start : cut + after]
        start = cut + after
    yield text[start:]


def size_groups(items: Iterable[Any], limit: int, parts: int = 1) -> Iterator[list[Any]]:
    """Consecutive texts (str or bytes), about `limit` in total length at a time (bounds what one
    call holds), or, for a sequence, in about `parts` groups of equal length when that makes them
    smaller (one per thread). With parts=1 `items` may be a stream: it is read as it goes."""
    target = max(1, limit)
    if parts > 1:
        items = list(items)
        target = max(1, min(limit, -(-sum(len(item) for item in items) // parts)))
    group: list[Any] = []
    size = 0
    for item in items:
        group.append(item)
        size += len(item)
        if size >= target:
            yield group
            group, size = [], 0
    if group:
        yield group


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Segmenter:
    """Base class. Subclasses set `kind` and implement encode, decode, vocab_size and
    `_byte_lengths`; trainable kinds implement `train`, the rest `from_spec`; all kinds
    implement `_save_files` and `_load`.
    """

    kind: ClassVar[str] = ""
    trainable: ClassVar[bool] = False
    default_vocab_size: ClassVar[int | None] = None  # trainable kinds whose spec may omit the size
    min_vocab_size: ClassVar[int] = 1  # trainable kinds: the smallest vocabulary a spec may ask for
    max_vocab_size: ClassVar[int] = MAX_VOCAB_SIZE
    min_vocab_reason: ClassVar[str] = ""  # what the smallest vocabulary holds, for the error message
    # Trainable kinds whose trainer runs in native code that returns to Python only when done:
    # trained in a child process (see child.py), so that Ctrl-C stops them at once.
    train_in_child: ClassVar[bool] = False
    # What `toklab segmenters` shows (see registry.describe): a one-line summary (default: the first
    # line of the docstring), what follows `kind:` in a spec (trainable kinds: SIZE), and the
    # kind's `key=value` options, which its checks use too.
    summary: ClassVar[str] = ""
    arg_syntax: ClassVar[str] = ""
    option_info: ClassVar[tuple[Option, ...]] = ()
    # The columns `extra_measures` adds, declared here so that reports show them without naming kinds.
    report_groups: ClassVar[tuple[ReportGroup, ...]] = ()
    # Where a text can be cut with the ids of the pieces, joined, equal to the ids of the whole:
    # CUT_ANYWHERE, CUT_NEWLINE, CUT_SPACE, CUT_WORD, CUT_STREAM, or None (the kind's ids depend on
    # context a cut would change, or the rule is not known to be exact for it: such a kind encodes
    # every text whole). Kinds may make it a property (it can depend on the instance, e.g. on a
    # tiktoken pattern or a tokenizer's normaliser).
    cut_rule: ClassVar[str | None] = None
    # Kinds that make their ids in numpy set this and override `_piece_arrays`: `encode_arrays` and
    # `encode_pieces` (so count_tokens, compare and shard writing) then take those arrays as they
    # are, and no Python list of ids is built (building one holds the GIL: it would not scale).
    arrays_native: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any] | None = None, corpus_fingerprint: str | None = None) -> None:
        self.params: dict[str, Any] = dict(params or {})
        self.corpus_fingerprint = corpus_fingerprint
        self._lengths: np.ndarray | None = None
        self._spec: str | None = None  # the spec it was made from, set by the registry

    # --- what every kind provides ---------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Ids for `text`, treating any special-token strings in it as ordinary text."""
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def _byte_lengths(self) -> np.ndarray:
        """The UTF-8 byte length of every id; 0 for special tokens."""
        raise NotImplementedError

    def extra_measures(self, texts: Sequence[str]) -> dict[str, float]:
        """Kind-specific figures for a compare row, measured on the validation `texts`; each is
        declared in `report_groups`. Default: none."""
        return {}

    @property
    def lossless(self) -> bool:
        """True when decode(encode(text)) == text for every string."""
        return True

    @property
    def special_tokens(self) -> dict[str, int]:
        return {}

    @property
    def spec(self) -> str:
        """The spec string that names this segmenter, options included (e.g. "bpe:32k,regex=o200k")."""
        if self._spec:
            return self._spec
        arg = self.params.get("arg")
        return f"{self.kind}:{arg}" if arg is not None else self.kind

    # --- derived, the same for every kind ------------------------------------------------------

    def token_byte_lengths(self) -> np.ndarray:
        """A read-only int64 array: the byte length of each id (special tokens 0)."""
        import numpy as np  # here, so listing kinds (the CLI's help) does not load numpy

        if self._lengths is None:
            lengths = np.asarray(self._byte_lengths(), dtype=np.int64)
            if lengths.shape != (self.vocab_size,):
                raise AssertionError(f"{self.kind}: {lengths.shape[0]} byte lengths for a vocabulary of {self.vocab_size}")
            lengths.flags.writeable = False
            self._lengths = lengths
        return self._lengths

    def byte_spans(self, ids: Sequence[int]) -> np.ndarray:
        """(n, 2) array of [start, end) byte offsets of each token in the UTF-8 text it encodes."""
        import numpy as np

        lengths = self.token_byte_lengths()[np.asarray(ids, dtype=np.int64)]
        ends = np.cumsum(lengths)
        return np.stack([ends - lengths, ends], axis=1)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (b"" for specials), for showing how text is cut."""
        if token_id in self.special_tokens.values():
            return b""
        return self.decode([token_id]).encode("utf-8", errors="surrogateescape")

    # --- long texts: exact pieces --------------------------------------------------------------

    def exact_cuts(self, text: str, size: int | None = None) -> Iterator[str]:
        """`text` as consecutive pieces (about `size` characters, default CUT_CHARS) whose ids, joined,
        are the ids of `text`; one piece for a short text, a text with no place to cut, or a kind
        that cannot be cut (`cut_rule` None)."""
        size = CUT_CHARS if size is None else max(1, size)
        rule = self.cut_rule
        if rule is None or len(text) <= size:
            yield text
        elif rule == CUT_ANYWHERE:
            for i in range(0, len(text), size):
                yield text[i : i + size]
        elif rule == CUT_NEWLINE:
            yield from newline_cuts(text, size)
        elif rule == CUT_SPACE:
            yield from space_cuts(text, size)
        elif rule == CUT_WORD:
            yield from _cuts_at(text, size, " ", lambda i: _ends_word(text, i), after=0)
        elif rule == CUT_STREAM:
            yield from (piece for piece, _ in self._long_pieces(text, size))
        else:
            raise AssertionError(f"{self.kind}: unknown cut rule {rule!r}")

    def encode_chunks(self, text: str, size: int | None = None, workers: int | None = None) -> Iterator[np.ndarray]:
        """The ids of `text` as int64 arrays, one per piece of `exact_cuts` (joined: `encode(text)`),
        so a long document's ids need never be held whole."""
        for _, ids in self._long_pieces(text, size, workers):
            yield ids

    def encode_pieces(self, texts: Sequence[str], workers: int | None = None) -> Iterator[tuple[int, str, Sequence[int]]]:
        """(index of the text, piece of it, the piece's ids) for `texts`, in order, at least one per
        text: a text up to CUT_CHARS long (or of a kind that cannot be cut) is one piece, its ids
        encoded with `encode_batch` alongside its neighbours'; a longer one comes in exact pieces
        (`encode_chunks`), so that consumers that count or write ids never hold its whole id list."""
        start = 0
        long = [i for i, t in enumerate(texts) if self._long(t)]
        batch = self.encode_arrays if self.arrays_native else self.encode_batch
        for end in [*long, len(texts)]:
            if end > start:
                short = texts[start:end]
                for i, (text, ids) in enumerate(zip(short, batch(short, workers=workers)), start):
                    yield i, text, ids
            if end < len(texts):
                for piece, ids in self._long_pieces(texts[end], workers=workers):
                    yield end, piece, ids
            start = end + 1

    def count_tokens(self, texts: Sequence[str], workers: int | None = None) -> np.ndarray:
        """The number of tokens of each text (int64), without holding a long text's ids."""
        import numpy as np

        counts = np.zeros(len(texts), dtype=np.int64)
        for i, _, ids in self.encode_pieces(texts, workers):
            counts[i] += len(ids)
        return counts

    def _long_pieces(self, text: str, size: int | None = None, workers: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """(piece, its ids) for the pieces of `exact_cuts`, encoded PIECE_GROUP at a time; a kind
        that cuts a long text itself (CUT_STREAM) overrides it."""
        for group in self._piece_groups(text, size):
            yield from zip(group, self._piece_arrays(group, workers))

    def _long_pieces_continued(self, text: str, size: int | None, first: Callable[[list[str]], list[list[int]]],
                               later: Callable[[list[str]], list[list[int]]]) -> Iterator[tuple[str, np.ndarray]]:
        """`_long_pieces` for a kind that adds something at the start of every text it encodes (a
        dummy prefix): the text's first piece through `first` (the kind as it is), every later one
        through `later` (the kind without that addition), each piece encoded once."""
        import numpy as np

        for n, group in enumerate(self._piece_groups(text, size)):
            head, rest = (group[:1], group[1:]) if n == 0 else ([], group)
            ids = (first(head) if head else []) + (later(rest) if rest else [])
            yield from zip(group, (np.array(i, dtype=np.int64) for i in ids))

    def _piece_groups(self, text: str, size: int | None = None) -> Iterator[list[str]]:
        """`exact_cuts` in lists of PIECE_GROUP pieces, each encoded in one batch call."""
        pieces = self.exact_cuts(text, size)
        while group := list(itertools.islice(pieces, PIECE_GROUP)):
            yield group

    def _encode_pieces(self, pieces: list[str], workers: int | None = None) -> list[list[int]]:
        """The ids of each piece, encoded whole (no cutting): kinds that cut override it with their
        library's call on short texts; an `arrays_native` kind's come from its arrays."""
        if self.arrays_native:
            return [ids.tolist() for ids in self._piece_arrays(pieces, workers)]
        return [self.encode(p) for p in pieces]

    def _piece_arrays(self, pieces: list[str], workers: int | None = None) -> list[np.ndarray]:
        import numpy as np

        return [np.array(ids, dtype=np.int64) for ids in self._encode_pieces(pieces, workers)]

    def _long(self, text: str) -> bool:
        """Whether `text` is encoded in pieces (a kind that cuts, a text over CUT_CHARS)."""
        return self.cut_rule is not None and len(text) > CUT_CHARS

    def _encode_cut(self, text: str, workers: int | None = None) -> list[int]:
        """`text`'s ids, encoded piece by piece (for `encode` of a long text of a kind that cuts)."""
        out: list[int] = []
        for _, ids in self._long_pieces(text, workers=workers):
            out.extend(ids.tolist())
        return out

    def _encode_batch_cut(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        """`encode_batch` for a kind that cuts: the short texts through `_encode_pieces` at once,
        each long one piece by piece."""
        texts = list(texts)
        long = [i for i, t in enumerate(texts) if self._long(t)]
        if not long:
            return self._encode_pieces(texts, workers)
        out = self._encode_pieces(["" if self._long(t) else t for t in texts], workers)
        for i in long:
            out[i] = self._encode_cut(texts[i], workers)
        return out

    def encode_arrays(self, texts: Sequence[str], workers: int | None = None) -> list[np.ndarray]:
        """The ids of each text as an int64 array (`encode_batch`'s ids). A kind that makes its ids
        in numpy (`arrays_native`) builds no Python list: for it this is the fast path, and with
        several workers its numpy work runs in threads that release the GIL."""
        import numpy as np

        if not self.arrays_native:
            return [np.asarray(ids, dtype=np.int64) for ids in self.encode_batch(texts, workers)]
        texts = list(texts)
        out = self._piece_arrays(["" if self._long(t) else t for t in texts], workers)
        for i, text in enumerate(texts):
            if self._long(text):
                out[i] = np.concatenate([ids for _, ids in self._long_pieces(text, workers=workers)])
        return out

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        """Encode many texts on all cores. This default uses a process pool (for pure-Python kinds);
        kinds backed by a library override it with the library's own batch path."""
        workers = cpu_count() if workers is None else workers
        if workers <= 1 or len(texts) < POOL_MIN_TEXTS:
            return [self.encode(t) for t in texts]
        chunk = max(1, len(texts) // (workers * 4))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.encode, texts, chunksize=chunk))

    # --- training and loading ------------------------------------------------------------------

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        """Refuse a malformed spec without doing any work (no training, no download, no reading of
        large files): unknown options, values out of range, a missing file. Called by the registry
        for every spec before anything is trained or loaded; a trainable kind's vocabulary size
        (`arg`) has been parsed and range-checked already. Kinds override it; the default checks
        nothing, and `train` / `from_spec` stay the last word."""

    @classmethod
    def training_revision(cls, options: dict[str, str]) -> int:
        """Raised by a kind when the same spec on the same corpus now trains a different segmenter, so
        that the cache does not hand back one trained by older code; 0 (the default) leaves the
        cache key as it has always been."""
        return 0

    @classmethod
    def spec_syntax(cls) -> str:
        """The spec's form, e.g. `bpe:SIZE[,key=value...]`, `entropy[:SIZE][,key=value...]`, `bytes`."""
        arg = cls.arg_syntax or ("SIZE" if cls.trainable else "")
        optional = cls.trainable and cls.default_vocab_size is not None
        text = cls.kind + (f"[:{arg}]" if optional else f":{arg}" if arg else "")
        return text + ("[,key=value...]" if cls.option_info else "")

    @classmethod
    def known_args(cls) -> list[dict[str, Any]]:
        """Named arguments this kind knows (e.g. tiktoken encodings), each `{"name": ...}` with
        whatever else is cheap to tell (such as whether it can be had offline now). Default: none."""
        return []

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, **options: str) -> "Segmenter":
        raise ToklabError(f"segmenter kind '{cls.kind}' is not trainable")

    @classmethod
    def from_spec(cls, arg: str | None, **options: str) -> "Segmenter":
        raise ToklabError(f"segmenter kind '{cls.kind}' needs training data")

    def _save_files(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "Segmenter":
        raise NotImplementedError

    def manifest(self) -> dict[str, Any]:
        from toklab._version import __version__

        return {
            "kind": self.kind,
            "spec": self.spec,
            "params": self.params,
            "vocab_size": self.vocab_size,
            "lossless": self.lossless,
            "corpus_fingerprint": self.corpus_fingerprint,
            "toklab_version": __version__,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the segmenter to `directory` (under a temporary name, then renamed)."""
        final = Path(directory)
        if final.exists() and any(final.iterdir()) and not (final / MANIFEST).is_file():
            raise ToklabError(f"{final} exists and is not a saved segmenter; choose an empty or new folder")
        with atomic_dir(final) as tmp:
            self._save_files(tmp)
            (tmp / MANIFEST).write_text(json.dumps(self.manifest(), indent=2, default=str) + "\n")
        return final

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec} vocab={self.vocab_size}{'' if self.lossless else ' LOSSY'}>"


def take_bytes(docs: Iterable[bytes], max_bytes: int) -> list[bytes]:
    """Non-empty documents, in order, until their total reaches `max_bytes` (the one that crosses it
    included); stops reading `docs` there."""
    out, total = [], 0
    for data in docs:
        if data:
            out.append(data)
            total += len(data)
        if total >= max_bytes:
            break
    return out


class PieceSegmenter(Segmenter):
    """A segmenter whose ids index a table of byte strings: ids 0-255 are the single bytes (so any
    text is representable), then the kind's own strings, then <|endoftext|>."""

    def _set_pieces(self, strings: Sequence[bytes]) -> None:
        self._pieces = [bytes([b]) for b in range(256)] + list(strings) + [b""]

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {EOT: len(self._pieces) - 1}

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self._pieces[i] for i in ids).decode("utf-8", errors="replace")

    def _byte_lengths(self) -> np.ndarray:
        import numpy as np

        return np.array([len(p) for p in self._pieces], dtype=np.int64)

    def token_bytes(self, token_id: int) -> bytes:
        return self._pieces[token_id]


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn any failure to read or make sense of a saved data file into a one-line ToklabError
    naming the file (a truncated, garbled or missing file must not end in a traceback)."""
    try:
        yield
    except ToklabError:
        raise
    except FileNotFoundError:
        raise ToklabError(f"{path} is missing: the saved segmenter in {path.parent} is incomplete") from None
    except Exception as exc:  # each library raises its own kinds for a damaged file
        raise ToklabError(f"cannot read {path}: it is damaged or not what toklab wrote ({one_line(exc)})") from None


def check_vocab_size(path: Path, found: int, manifest: dict[str, Any]) -> None:
    """Refuse a data file that holds another number of ids than the manifest recorded (cut short, or
    replaced)."""
    expected = manifest.get("vocab_size")
    if isinstance(expected, int) and not isinstance(expected, bool) and found != expected:
        raise ToklabError(f"cannot read {path}: it is damaged (it gives {found:,} ids, {MANIFEST} says {expected:,})")
