"""`patches:...`: flagged bytes for a Byte-Latent-Transformer-style model, with the patch boundaries
of a *patcher* (static, space, entropy, or any other segmenter's tokens).

The flagged-byte contract (what `toklab.gpt.blt` reads):

* FLAG = 257. Byte value b (0-255) at a position that starts a patch has id `b + 257`, otherwise
  id `b`; `byte = id % 257`. End-of-text is id 513 (= 256 + 257, always a patch start).
  vocab_size 514. Every byte id has byte length 1; end-of-text 0. Id 256 is never produced (it is
  no byte): byte length 0, decoded as nothing.
* Patches are over the positions of one document's UTF-8 bytes; position 0 of every document
  starts a patch. Flags are computed per document, never across documents (a document's flags are
  the same alone or in a batch).
* Causality: for the `static`, `space` and `entropy` patchers the flag at position t depends only
  on bytes 0..t of the same document (`starts(data[:k]) == starts(data)[:k]`). The `segmenter`
  patcher (boundaries of e.g. `bpe:4k`) is NOT strictly causal: see `SegmenterPatcher`.
  Every patcher says which it is in its `causal` attribute.
* Long documents (over CUT_CHARS) are flagged in exact pieces (`Patcher.pieces`, CUT_STREAM): their
  ids, joined, are the whole document's. static computes a piece's flags from its byte offset;
  space cuts at patch starts (where its rule restarts); entropy uses its segmenter's own windows
  when that segmenter streams; a segmenter's tokens come from its own exact pieces when it has a
  cut rule. Otherwise a document is flagged whole (`PatchedBytes.cut_rule` None).

Patcher specs (`load_patcher`): `static[:size=4.5]`, `space[:max_len=16]`, `entropy[:...]` (any
spec of the `entropy` segmenter kind, trained and cached through `get_segmenter`), or any other
segmenter spec (`bpe:4k`, a saved folder, ...). Study rows name them `blt:static,size=4.5`,
`blt:space`, `blt:entropy,target=4.5`, `blt:bpe:4k` (`patcher_spec_of_row`).

Patches are not a segmenter kind of the registry (compare has no use for them): this module
builds on the registry, and a saved `patches` folder is read back with `load_patched`.
It loads numpy only when it works.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

from toklab.errors import ToklabError
from toklab.segmenters import base
from toklab.segmenters import options as opt
from toklab.segmenters import registry
from toklab.segmenters.base import CUT_STREAM, EOT, MANIFEST, Segmenter, reading

if TYPE_CHECKING:
    import numpy as np

    from toklab.corpus import Corpus

FLAG = 257
EOT_ID = 513  # 256 + FLAG: end-of-text, always a patch start
VOCAB_SIZE = 514
KIND = "patches"
ROW_PREFIX = "blt:"
DEFAULT_STATIC_SIZE = 4.5  # BLT's usual mean patch length
DEFAULT_SPACE_MAX_LEN = 16  # BLT and SpaceByte bound long words
MAX_PATCH_BYTES = 2**20  # as entropy's max_len: a patch of a mebibyte is no longer a patch
INNER = "inner"  # the subfolder that holds an entropy or other segmenter
STATIC_OPTIONS = opt.option_table(
    [opt.Option("size", "real", DEFAULT_STATIC_SIZE, "static: mean patch length in bytes (a patch starts where floor(t/size) changes)", low=1.0, high=MAX_PATCH_BYTES)]
)
SPACE_OPTIONS = opt.option_table(
    [opt.Option("max_len", "whole", DEFAULT_SPACE_MAX_LEN, "space: longest patch in bytes (longer words are cut at character starts)", low=1, high=MAX_PATCH_BYTES)]
)

# --- patchers ----------------------------------------------------------------------------------------


class Patcher:
    """Patch boundaries of a document's bytes, nothing else (no vocabulary).

    `starts(data)` is a boolean array, True where a patch starts (always at 0 of a non-empty
    document); `max_len` bounds the patch length in bytes (None: no bound); `causal` says whether
    the flag at t depends on bytes 0..t only."""

    name: ClassVar[str] = ""
    causal: ClassVar[bool] = True
    max_len: int | None = None

    def starts(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def starts_batch(self, docs: Sequence[bytes]) -> list[np.ndarray]:
        """`starts` of each document, each on its own (a batch changes nothing)."""
        return [self.starts(d) for d in docs]

    @property
    def streams(self) -> bool:
        """Whether `pieces` gives a long text's flags piece by piece (else it is patched whole)."""
        return False

    def pieces(self, text: str, size: int, workers: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(piece, its UTF-8 bytes as uint8, its flags) for consecutive pieces of `text` of about
        `size` bytes, each a str (cut between characters), whose flags, joined, are exactly
        `starts(text.encode())`: a long document's flags without holding them whole. Only when
        `streams`."""
        raise NotImplementedError(f"the {self.name} patcher patches a text whole")

    @property
    def entropy_flops_per_byte(self) -> float | None:
        """Forward FLOPs per byte of the model the boundaries come from; None when there is none."""
        return None

    def params(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return self.name


class StaticPatcher(Patcher):
    """A patch starts at t when floor(t / size) != floor((t - 1) / size), and at t = 0: patches of
    floor(size) or ceil(size) bytes, mean `size`. Depends on the position only (so causal); it
    ignores characters (a patch may start inside a UTF-8 character), as BLT's static patching does.
    `size` is taken as an exact fraction of its decimal form, so 2.5 cuts exactly at 0, 3, 5, 8, ..."""

    name = "static"

    def __init__(self, size: float = DEFAULT_STATIC_SIZE) -> None:
        if not (isinstance(size, (int, float)) and math.isfinite(size) and 1 <= size <= MAX_PATCH_BYTES):
            raise ToklabError(f"static patch size must be a number between 1 and {MAX_PATCH_BYTES:,}, not {size!r}")
        self.size = float(size)
        self._fraction = Fraction(repr(self.size)).limit_denominator(10**6)
        self.max_len = math.ceil(self.size)

    def starts(self, data: bytes) -> np.ndarray:
        import numpy as np

        n = len(data)
        t = np.arange(n, dtype=np.int64)
        block = (t * self._fraction.denominator) // self._fraction.numerator  # floor(t / size), exactly
        starts = np.ones(n, dtype=bool)
        starts[1:] = block[1:] != block[:-1]
        return starts

    def starts_at(self, n: int, offset: int) -> np.ndarray:
        """The flags of the `n` bytes from byte `offset` of a document on: a patch starts at t when
        floor(t / size) changes from t - 1, t counted from the document's start (so a piece's first
        byte starts a patch only where the whole document's does)."""
        import numpy as np

        t = np.arange(offset - 1, offset + n, dtype=np.int64)  # one position before the piece too
        block = (t * self._fraction.denominator) // self._fraction.numerator
        starts = block[1:] != block[:-1]
        if offset == 0 and n:
            starts[0] = True
        return starts

    @property
    def streams(self) -> bool:
        return True

    def pieces(self, text: str, size: int, workers: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Pieces of about `size` bytes, each ended at the first character boundary from there on;
        each piece's flags from its byte offset (`starts_at`)."""
        import numpy as np

        data = text.encode("utf-8")
        x = np.frombuffer(data, dtype=np.uint8)
        for pos, end in _char_pieces(x, size):
            yield data[pos:end].decode("utf-8"), x[pos:end], self.starts_at(end - pos, pos)

    def params(self) -> dict[str, Any]:
        return {"size": self.size}

    def describe(self) -> str:
        return f"static {self.size:g} B"


class SpacePatcher(Patcher):
    """SpaceByte's rule: a byte is spacelike when it is not an ASCII letter or digit and not part
    of a multi-byte UTF-8 character; a patch starts at t when byte t is spacelike and byte t-1 was
    not (so a run of spaces stays in one patch), and at t = 0.

    Multi-byte characters: continuation bytes (0x80-0xBF) are never spacelike, and lead bytes
    (0xC0 and up) are taken as NOT spacelike either: they start the letters of most scripts
    (Cyrillic, Greek, CJK, ...), so a word in those scripts is one patch like an English one.
    (Non-ASCII punctuation and spaces, e.g. U+3001 or U+00A0, are thus word-like: a known
    simplification.)

    `max_len` (default 16, the bound of BLT/SpaceByte) cuts a longer patch causally: before a
    character whose bytes would make the patch longer than max_len, the character's length
    being read from its first byte; never inside a character (one character longer than max_len
    is a patch of its own)."""

    name = "space"

    def __init__(self, max_len: int = DEFAULT_SPACE_MAX_LEN) -> None:
        if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= MAX_PATCH_BYTES:
            raise ToklabError(f"space max_len must be a whole number between 1 and {MAX_PATCH_BYTES:,}, not {max_len!r}")
        self.max_len = max_len

    def starts(self, data: bytes) -> np.ndarray:
        import numpy as np

        x = np.frombuffer(data, dtype=np.uint8)
        if len(x) == 0:
            return np.zeros(0, dtype=bool)
        upper = x & 0xDF  # ASCII letters folded to upper case
        alnum = ((x >= ord("0")) & (x <= ord("9"))) | ((upper >= ord("A")) & (upper <= ord("Z")) & (x < 0x80))
        spacelike = (x < 0x80) & ~alnum
        starts = np.empty(len(x), dtype=bool)
        starts[0] = True
        starts[1:] = spacelike[1:] & ~spacelike[:-1]
        return causal_cap(starts, x, self.max_len)

    @property
    def streams(self) -> bool:
        return True

    def pieces(self, text: str, size: int, workers: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Pieces that each end right before a patch start of the whole document (the last one within
        about `size` bytes of the piece's start; a window with none is doubled until it has one or
        reaches the end), each with `starts` of its bytes alone. Why that is exact:

        Let p be a patch start of the whole document, d = data. (1) The uncapped rule at t >= 1 reads
        bytes t - 1 and t only, so the uncapped starts of d[p:] are the whole's from p + 1 on; at p,
        d[p:] has its first start (position 0). (2) causal_cap walks each uncapped patch from its
        first byte, `last` being the latest start; a new start at t depends on byte t and `last`
        alone, and a patch of at most max_len - 3 bytes (the walk's shortcut) gets none. In the
        whole, at p either an uncapped patch begins (its walk begins there) or the walk has just set
        a capped start at p (`last` = p); either way what follows p depends only on bytes from p on
        and on `last` = p, which is what the walk of d[p:] starts with. So starts(d[p:]) equals
        starts(d)[p:]. (3) Both rules are causal (starts(d[:k]) == starts(d)[:k], cut inside a
        character or not), so the flags of a window d[p:e] are those of d[p:] before e. Hence a piece
        [p, q) with p and q starts of the whole has, computed alone, the whole's flags, capped starts
        as good a cut as uncapped ones (a long run with no space is cut every max_len bytes). A start
        is a character's first byte (uncapped ones are ASCII, capped ones are never continuation
        bytes), so every piece is a str."""
        import numpy as np

        data = text.encode("utf-8")
        x = np.frombuffer(data, dtype=np.uint8)
        pos, n = 0, len(data)
        while pos < n:
            end = min(n, pos + size)
            while True:
                flags = self.starts(data[pos:end])
                later = np.flatnonzero(flags[1:])
                if end == n or len(later):
                    break
                end = min(n, pos + 2 * (end - pos))
            cut = n if end == n else pos + 1 + int(later[-1])
            yield data[pos:cut].decode("utf-8"), x[pos:cut], flags[: cut - pos]
            pos = cut

    def params(self) -> dict[str, Any]:
        return {"max_len": self.max_len}

    def describe(self) -> str:
        return f"space (max {self.max_len} B)"


def _char_pieces(x: np.ndarray, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive pieces of `x` (UTF-8 bytes) of `size` bytes, each end moved on to
    the next byte that is no continuation byte, so each piece is whole characters."""
    pos, n = 0, len(x)
    while pos < n:
        end = min(n, pos + max(1, size))
        while end < n and (int(x[end]) & 0xC0) == 0x80:
            end += 1
        yield pos, end
        pos = end


def _char_widths(x: np.ndarray) -> np.ndarray:
    """The byte length a UTF-8 first byte announces (1 for ASCII, continuation and invalid bytes)."""
    import numpy as np

    widths = np.ones(len(x), dtype=np.int64)
    widths[(x >= 0xC0) & (x < 0xE0)] = 2
    widths[(x >= 0xE0) & (x < 0xF0)] = 3
    widths[(x >= 0xF0) & (x < 0xF8)] = 4
    return widths


def causal_cap(starts: np.ndarray, x: np.ndarray, max_len: int) -> np.ndarray:
    """Add starts so that no patch is longer than max_len bytes, deciding each from bytes up to it:
    a patch is cut at a character start t when t + (the length t's first byte announces) would run
    past max_len bytes from the patch's start. Never inside a character.

    On valid UTF-8 whose starts are all character starts this gives what patching.cap_lengths
    gives (without split_utf8); unlike it, it never looks at where a patch ends, so a prefix of the
    document cut inside a character gets the same flags as the whole document (strictly causal)."""
    from toklab.segmenters.patching import patch_lengths

    import numpy as np

    # A character announces at most 4 bytes, so in a patch of up to max_len - 3 bytes none can run
    # past max_len; only longer ones are walked. (Not `> max_len`: a patch whose last character is
    # cut off by the end of the data must be cut where the whole character would be.)
    reach = max_len - 3
    if len(starts) == 0 or patch_lengths(starts).max() <= reach:
        return starts
    positions = np.flatnonzero(starts)
    ends = np.append(positions[1:], len(starts))
    long = np.flatnonzero(ends - positions > reach)
    out = starts.copy()
    boundary = ((x & 0xC0) != 0x80).tolist()
    widths = _char_widths(x).tolist()
    for begin, end in zip(positions[long].tolist(), ends[long].tolist()):
        last = begin
        for t in range(begin + 1, end):
            if boundary[t] and t + widths[t] - last > max_len:
                out[t] = True
                last = t
    return out


class EntropyPatcher(Patcher):
    """The starts of a trained `entropy` segmenter (EntropySegmenter: its θ calibrated to `target`
    on held-out train text, or a fixed `theta`). The entropy at t is H(x_t | x_<t), so the flags are
    causal with either model, and a `max_len=` cap is applied causally (`causal_cap`, which gives the
    same cuts as the entropy segmenter's own on whole documents). With `model=transformer`, texts
    longer than its context are read in windows anchored at the text's start, so the window that
    scores t, and the entropy there, depend on t and data[:t] only (tests/segmenters/
    test_entropy_transformer.py: a prefix scores like the whole text's start); its float32 numbers
    may differ in the last bits with the batch a window runs in (a text within its first window
    runs at its own length), which could flip a flag only where an entropy lies that close to θ."""

    name = "entropy"

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter
        self.max_len = segmenter.max_len

    def starts(self, data: bytes) -> np.ndarray:
        return self.starts_batch([data])[0]

    def starts_batch(self, docs: Sequence[bytes]) -> list[np.ndarray]:
        import numpy as np

        from toklab.segmenters.patching import patch_starts

        seg = self.segmenter
        out = []
        for data, (entropy, _) in zip(docs, seg._scores(list(docs))):
            if seg.max_len is None or seg.split_utf8:  # uncapped, or cut by length alone: causal as it is
                out.append(seg._starts(entropy, data))
                continue
            # patching.cap_lengths looks at where a patch ends (one character ahead): cap causally instead
            x = np.frombuffer(data, dtype=np.uint8)
            starts = patch_starts(entropy, x, seg.theta, seg.rule, relative=seg.relative, split_utf8=False)
            out.append(causal_cap(starts, x, seg.max_len))
        return out

    @property
    def streams(self) -> bool:
        """When the entropy segmenter cuts a long text itself (its `cut_rule` is CUT_STREAM)."""
        return getattr(self.segmenter, "cut_rule", None) == CUT_STREAM

    def pieces(self, text: str, size: int, workers: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """The entropy segmenter's own windows (`EntropySegmenter._windows`: pieces that end where an
        uncapped patch starts, with the whole text's patch starts), capped as `starts_batch` caps: by
        the segmenter's own cap when it has no max_len or splits characters, else causally per piece,
        exact because every piece starts at an uncapped start (see `SpacePatcher.pieces`)."""
        import numpy as np

        seg = self.segmenter
        data = text.encode("utf-8")
        x = np.frombuffer(data, dtype=np.uint8)
        own_cap = seg.max_len is None or seg.split_utf8
        for pos, cut, starts in seg._windows(data, size, capped=own_cap):
            if not own_cap:
                starts = causal_cap(starts, x[pos:cut], seg.max_len)
            yield data[pos:cut].decode("utf-8"), x[pos:cut], starts

    @property
    def entropy_flops_per_byte(self) -> float | None:
        """Forward FLOPs per byte of the entropy model: 0.0 for the n-gram model (table look-ups, no
        matrix multiplies); for the transformer, a third of gpt.flops' training figure for its shape
        with a 256-byte head (2 N + 4 L T d: matmul weights and attention at full context), per
        scored byte, not counting the overlap of its inference windows; None for another model."""
        model = self.segmenter.model
        kind = getattr(model, "kind", None)
        if kind == "ngram":
            return 0.0
        if kind == "transformer":
            from toklab.gpt.flops import ModelShape, flops_per_token

            p = model.params
            shape = ModelShape("entropy-transformer", n_layer=int(p["n_layer"]), d_model=int(p["d_model"]), context=int(p["context"]))
            return flops_per_token(shape, 256) / 3.0
        return None

    def params(self) -> dict[str, Any]:
        seg = self.segmenter
        return {"model": getattr(seg.model, "kind", None), "theta": seg.theta, "rule": seg.rule, "max_len": seg.max_len, "target": seg.params.get("target")}

    def describe(self) -> str:
        target = self.segmenter.params.get("target")
        return f"entropy {getattr(self.segmenter.model, 'kind', '?')}" + (f" target {target:g} B" if isinstance(target, (int, float)) else f" theta {self.segmenter.theta:.3g}")


class SegmenterPatcher(Patcher):
    """The token boundaries of any other segmenter (e.g. `bpe:4k`): each token's bytes are one
    patch (tokens of byte length 0, such as special tokens, are skipped).

    NOT strictly causal: a token boundary can depend on later bytes of the same pre-token (BPE
    merges a whole pre-token at once; a longer word can move an earlier boundary), so a model
    scored on these flags sees a little of the future. `causal` is False."""

    name = "segmenter"
    causal = False

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self.max_len = int(segmenter.token_byte_lengths().max()) if segmenter.vocab_size else None

    def starts(self, data: bytes) -> np.ndarray:
        return self.starts_batch([data])[0]

    def starts_batch(self, docs: Sequence[bytes]) -> list[np.ndarray]:
        import numpy as np

        lengths = self.segmenter.token_byte_lengths()
        out = []
        for data, ids in zip(docs, self.segmenter.encode_batch([d.decode("utf-8") for d in docs])):
            sizes = lengths[np.asarray(ids, dtype=np.int64)]
            sizes = sizes[sizes > 0]
            if int(sizes.sum()) != len(data):
                raise ToklabError(f"the tokens of {self.segmenter.spec} do not cover a text's bytes exactly ({int(sizes.sum())} for {len(data)}), so they cannot be patches")
            starts = np.zeros(len(data), dtype=bool)
            starts[np.cumsum(sizes)[:-1]] = True
            if len(data):
                starts[0] = True
            out.append(starts)
        return out

    @property
    def streams(self) -> bool:
        """When the segmenter encodes a long text in exact pieces (its `cut_rule` is not None)."""
        return self.segmenter.cut_rule is not None

    def pieces(self, text: str, size: int, workers: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """The segmenter's own exact pieces (`_long_pieces`): their ids, joined, are the whole text's,
        and each covers its piece's bytes, so a piece's token boundaries are the whole's there."""
        import numpy as np

        lengths = self.segmenter.token_byte_lengths()
        for piece, ids in self.segmenter._long_pieces(text, size, workers):
            data = piece.encode("utf-8")
            sizes = lengths[np.asarray(ids, dtype=np.int64)]
            sizes = sizes[sizes > 0]
            if int(sizes.sum()) != len(data):
                raise ToklabError(f"the tokens of {self.segmenter.spec} do not cover a piece of a long text exactly ({int(sizes.sum())} for {len(data)}), so they cannot be patches")
            starts = np.zeros(len(data), dtype=bool)
            starts[np.cumsum(sizes)[:-1]] = True
            if len(data):
                starts[0] = True
            yield piece, np.frombuffer(data, dtype=np.uint8), starts

    def params(self) -> dict[str, Any]:
        return {"segmenter": self.segmenter.spec, "vocab_size": self.segmenter.vocab_size}

    def describe(self) -> str:
        return f"tokens of {self.segmenter.spec}"


# --- specs --------------------------------------------------------------------------------------------


def _split(spec: str) -> tuple[str, str]:
    """'static:size=4.5' -> ('static', 'size=4.5'); 'bpe:4k' -> ('bpe', '4k'); 'space' -> ('space', '')."""
    text = spec.strip()
    colon, comma = text.find(":"), text.find(",")
    cut = min(i for i in (colon, comma, len(text)) if i >= 0)
    return text[:cut].strip().lower(), text[cut + 1 :]


def patcher_spec_of_row(row: str) -> str:
    """A study row name -> its patcher spec: `blt:entropy,target=4.5` -> `entropy:target=4.5`,
    `blt:static,size=4.5` -> `static:size=4.5`, `blt:space` -> `space`, `blt:bpe:4k` -> `bpe:4k`
    (the first ',' after the kind becomes ':' when the kind has no ':')."""
    text = str(row).strip()
    if not text.lower().startswith(ROW_PREFIX):
        raise ToklabError(f"'{text}' is not a BLT row name (e.g. blt:static,size=4.5, blt:space, blt:entropy,target=4.5, blt:bpe:4k)")
    rest = text[len(ROW_PREFIX) :].strip()
    if not rest:
        raise ToklabError(f"'{text}' names no patcher (e.g. blt:static,size=4.5, blt:space, blt:entropy,target=4.5, blt:bpe:4k)")
    colon, comma = rest.find(":"), rest.find(",")
    if comma >= 0 and (colon < 0 or comma < colon):
        rest = rest[:comma] + ":" + rest[comma + 1 :]
    return rest


def _kind_spec(patcher_spec: str) -> str:
    """A patcher spec as the arg of a `patches:` segmenter spec (the reverse of the row rule):
    `static:size=4.5` -> `patches:static,size=4.5`, `bpe:4k` -> `patches:bpe:4k`."""
    kind, rest = _split(patcher_spec)
    if not rest:
        return f"{KIND}:{kind}"
    first = rest.split(",", 1)[0]
    joiner = "," if "=" in first else ":"
    return f"{KIND}:{kind}{joiner}{rest}"


def _typed_options(kind: str, spec: str, table: dict[str, opt.Option]) -> dict[str, Any]:
    parsed = registry.parse_spec(spec)
    if parsed.arg is not None:
        raise ToklabError(f"patcher '{spec}' takes no argument ('{parsed.arg}'); options are key=value, e.g. {kind}:{next(iter(table))}=...")
    opt.check_unknown(f"{kind} patcher", parsed.options, table)
    out = {name: (o.check(f"{kind} patcher", o.default) if isinstance(o.default, str) else o.default) for name, o in table.items()}
    out.update({key: table[key].check(f"{kind} patcher", value) for key, value in parsed.options.items()})
    return out


def check_patcher_spec(spec: str) -> str:
    """Check a patcher spec (or a `blt:` row name) without doing any work; returns the patcher spec.
    A mistake is a one-line ToklabError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ToklabError(f"a patcher spec is a string such as static:size=4.5, space, entropy:target=4.5 or bpe:4k, not {spec!r}")
    spec = spec.strip()
    if spec.lower().startswith(ROW_PREFIX):
        spec = patcher_spec_of_row(spec)
    kind, _ = _split(spec)
    if kind == "static":
        _typed_options(kind, spec, STATIC_OPTIONS)
    elif kind == "space":
        _typed_options(kind, spec, SPACE_OPTIONS)
    elif kind in (KIND, "blt"):
        raise ToklabError(f"patcher '{spec}' would patch with patches; name static, space, entropy or another segmenter")
    else:
        registry.check_spec(spec)
    return spec


def load_patcher(spec: str, corpus: "Corpus | None" = None, *, progress: bool = False) -> "PatchedBytes":
    """Flagged bytes with the patches a spec names: `static[:size=4.5]`, `space[:max_len=16]`,
    `entropy[:...]` or any other segmenter spec (also a `blt:` row name). Entropy and other
    segmenters come from `get_segmenter` (trained on `corpus`'s train split, or the default corpus,
    and cached). A bad spec is a one-line ToklabError before any training."""
    spec = check_patcher_spec(spec)
    kind, _ = _split(spec)
    patcher: Patcher
    if kind == "static":
        patcher = StaticPatcher(**_typed_options(kind, spec, STATIC_OPTIONS))
    elif kind == "space":
        patcher = SpacePatcher(**_typed_options(kind, spec, SPACE_OPTIONS))
    else:
        patcher = patcher_of(registry.get_segmenter(spec, corpus, progress=progress))
    return PatchedBytes(patcher, spec)


def patcher_of(segmenter: Segmenter) -> Patcher:
    """The patcher for a built segmenter: its entropy patches, or its token boundaries."""
    from toklab.segmenters.entropy import EntropySegmenter

    if isinstance(segmenter, PatchedBytes):
        raise ToklabError("a patches segmenter cannot give the patches of another one")
    if isinstance(segmenter, EntropySegmenter):
        return EntropyPatcher(segmenter)
    return SegmenterPatcher(segmenter)


def _spec_of(arg: str | None, options: dict[str, str]) -> str:
    """The arg and options of a `patches:` segmenter spec -> the patcher spec."""
    if not arg:
        raise ToklabError("'patches' needs a patcher, e.g. patches:static,size=4.5, patches:space, patches:entropy,target=4.5 or patches:bpe:4k")
    items = ",".join(f"{k}={v}" for k, v in options.items())
    if not items:
        return arg
    return f"{arg}{',' if ':' in arg else ':'}{items}"


# --- the segmenter ----------------------------------------------------------------------------------


class PatchedBytes(Segmenter):
    """Flagged bytes for a BLT-style model: byte b is id b, or b + 257 where a patch starts; 513 ends a text."""

    kind = KIND
    summary = "BLT flagged bytes: id b, or b+257 where a patch starts (patches: static, space, entropy, or any segmenter's tokens)"
    arg_syntax = "static|space|entropy|SPEC"
    option_info = (*STATIC_OPTIONS.values(), *SPACE_OPTIONS.values())

    def __init__(self, patcher: Patcher, patcher_spec: str, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.patcher = patcher
        self.patcher_spec = patcher_spec
        self.params = {"patcher": patcher.name, "patcher_spec": patcher_spec, "causal": patcher.causal, "max_len": patcher.max_len, **patcher.params(), **(params or {})}
        self._spec = _kind_spec(patcher_spec)
        self.corpus_fingerprint = getattr(getattr(patcher, "segmenter", None), "corpus_fingerprint", None)

    # --- what it is --------------------------------------------------------------------------------

    @property
    def causal(self) -> bool:
        return self.patcher.causal

    @property
    def max_len(self) -> int | None:
        return self.patcher.max_len

    @property
    def entropy_flops_per_byte(self) -> float | None:
        return self.patcher.entropy_flops_per_byte

    def describe(self) -> str:
        return f"flagged bytes, patches: {self.patcher.describe()}" + ("" if self.causal else " (not causal)")

    @property
    def label(self) -> str:
        return self.describe()

    # --- the segmenter interface -------------------------------------------------------------------

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        check_patcher_spec(_spec_of(arg, options))

    @classmethod
    def from_spec(cls, arg: str | None, **options: str) -> "PatchedBytes":
        """From a `patches:` spec; an entropy or other inner segmenter trains on the default corpus
        (use load_patcher(spec, corpus) for another)."""
        return load_patcher(_spec_of(arg, options))

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    @property
    def special_tokens(self) -> dict[str, int]:
        return {EOT: EOT_ID}

    @property
    def lossless(self) -> bool:
        return True

    def starts_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The flags of each text, computed on the whole text (never in pieces)."""
        return self.patcher.starts_batch([t.encode("utf-8") for t in texts])

    @property
    def cut_rule(self) -> str | None:  # type: ignore[override]
        """A text longer than CUT_CHARS is flagged piece by piece (`Patcher.pieces`) when the patcher
        can: static (flags from the byte offset), space (pieces cut at patch starts), entropy when its
        segmenter streams (the n-gram model), a segmenter's tokens when that segmenter cuts; the
        rest are flagged whole."""
        return CUT_STREAM if self.patcher.streams else None

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        return self._encode_batch_cut(texts, workers)

    arrays_native = True  # the ids are the bytes plus the flags: arrays straight from numpy

    def _piece_arrays(self, pieces: list[str], workers: int | None = None) -> list[np.ndarray]:
        """The ids of each text (int64), its flags computed on the whole text."""
        import numpy as np

        out = []
        for text, starts in zip(pieces, self.starts_batch(pieces)):
            x = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
            out.append(x + FLAG * starts)
        return out

    def _long_pieces(self, text: str, size: int | None = None, workers: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """(piece, its flagged-byte ids) for a long text: the patcher's pieces, whose flags, joined,
        are those of the whole text."""
        if not self.patcher.streams:
            yield from super()._long_pieces(text, size, workers)
            return
        size = base.CUT_CHARS if size is None else max(1, size)
        for piece, x, starts in self.patcher.pieces(text, size, workers):
            yield piece, x.astype("int64") + FLAG * starts

    def decode(self, ids: Sequence[int]) -> str:
        import numpy as np

        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(arr) and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
            raise ToklabError(f"flagged-byte ids are 0 to {VOCAB_SIZE - 1}; got {int(arr.min() if arr.min() < 0 else arr.max())}")
        data = arr % FLAG
        return data[data < 256].astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def _byte_lengths(self) -> np.ndarray:
        import numpy as np

        lengths = np.ones(VOCAB_SIZE, dtype=np.int64)
        lengths[256] = 0  # no byte: never produced
        lengths[EOT_ID] = 0
        return lengths

    def token_bytes(self, token_id: int) -> bytes:
        byte = int(token_id) % FLAG
        return bytes([byte]) if byte < 256 and 0 <= token_id < VOCAB_SIZE else b""

    # --- patch figures -----------------------------------------------------------------------------

    def patch_stats(self, texts: Sequence[str]) -> dict[str, Any]:
        """Patch lengths over `texts`: bytes_per_patch (total bytes / total patches, the same as the
        mean patch length), median, 90th percentile and longest patch, with the counts. A long text
        is read piece by piece (a patch may run across pieces): only the count of each length is
        kept, so the figures are those of all the lengths at once."""
        import numpy as np

        from toklab.segmenters.patching import patch_lengths

        counts: dict[int, int] = {}

        def add(lengths: np.ndarray) -> None:
            for value, count in zip(*(a.tolist() for a in np.unique(lengths, return_counts=True))):
                counts[value] = counts.get(value, 0) + count

        short = [t for t in texts if not self._long(t)]
        for group in base.size_groups(short, 1 << 22):  # bounds the flags held at once
            for starts in self.starts_batch(group):
                add(patch_lengths(starts))
        for text in (t for t in texts if self._long(t)):
            open_patch = 0  # bytes of the patch the last piece ended in
            for _, _, starts in self.patcher.pieces(text, base.CUT_CHARS):
                positions = np.flatnonzero(starts)
                if not len(positions):
                    open_patch += len(starts)
                    continue
                if open_patch + int(positions[0]):  # the patch that ran on from earlier pieces ends here
                    add(np.array([open_patch + int(positions[0])]))
                add(np.diff(positions))
                open_patch = len(starts) - int(positions[-1])
            if open_patch:
                add(np.array([open_patch]))
        return _length_figures(counts, len(texts), self.causal)

    # --- saving ------------------------------------------------------------------------------------

    def _save_files(self, directory: Path) -> None:
        inner = getattr(self.patcher, "segmenter", None)
        if inner is not None:
            inner.save(directory / INNER)

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "PatchedBytes":
        params = manifest.get("params") or {}
        where = directory / MANIFEST
        with reading(where):
            name, spec = params["patcher"], params["patcher_spec"]
            if not isinstance(spec, str):
                raise ValueError("patcher_spec is not a string")
            if name == "static":
                patcher: Patcher = StaticPatcher(float(params["size"]))
            elif name == "space":
                patcher = SpacePatcher(int(params["max_len"]))
            elif name in ("entropy", "segmenter"):
                patcher = None  # type: ignore[assignment]
            else:
                raise ValueError(f"unknown patcher {name!r}")
        if name in ("entropy", "segmenter"):
            patcher = patcher_of(registry.load_segmenter(directory / INNER))
            if patcher.name != name:
                raise ToklabError(f"cannot read {directory / INNER}: it holds a {patcher.name} patcher, the manifest says {name}")
        return cls(patcher, spec)


def _length_figures(counts: dict[int, int], documents: int, causal: bool) -> dict[str, Any]:
    """patch_stats' figures from the number of patches of each length: the mean, median and 90th
    percentile as numpy computes them on the lengths themselves (np.median; np.percentile's linear
    rule, on the two lengths it falls between) without making the array of lengths."""
    import numpy as np

    values = sorted(counts)
    tally = np.array([counts[v] for v in values], dtype=np.int64)
    n = int(tally.sum())
    n_bytes = sum(v * c for v, c in counts.items())
    nan = float("nan")
    if not n:
        median = p90 = nan
    else:
        ends = np.cumsum(tally)

        def kth(k: int) -> int:  # the k-th smallest length (from 0)
            return values[int(np.searchsorted(ends, k, side="right"))]

        median = float(np.median(np.array([kth((n - 1) // 2), kth(n // 2)], dtype=np.int64)))
        virtual = (n - 1) * 0.9  # numpy's index for the linear method
        below = int(virtual)
        pair = np.array([kth(below), kth(min(below + 1, n - 1))], dtype=np.int64)
        p90 = float(np.percentile(pair, 100 * (virtual - below)))
    return {
        "documents": documents,
        "bytes": n_bytes,
        "patches": n,
        "bytes_per_patch": nan if not n else n_bytes / n,
        "mean_patch_bytes": nan if not n else n_bytes / n,
        "median_patch_bytes": median,
        "p90_patch_bytes": p90,
        "max_patch_bytes": values[-1] if n else 0,
        "causal": causal,
    }


def load_patched(directory: str | Path) -> PatchedBytes:
    """A `PatchedBytes` saved with `save` (patches are not a registry kind: `load_segmenter` does
    not read them). A folder that is not one is a one-line ToklabError."""
    directory = Path(directory)
    manifest = registry.read_manifest(directory)
    if manifest["kind"] != KIND:
        raise ToklabError(f"{directory} does not hold saved patches (its kind is {manifest['kind']!r}, not '{KIND}')")
    patched = registry.load_saved(PatchedBytes, directory, manifest)
    assert isinstance(patched, PatchedBytes)
    return patched
