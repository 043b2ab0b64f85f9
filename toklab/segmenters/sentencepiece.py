"""`unigram`, `spm-bpe` and `spm`: SentencePiece models.

`unigram:8k` and `spm-bpe:8k` train a SentencePiece model on a corpus's train split (in a child
process, see child.py, so that Ctrl-C stops it at once);
`spm:path/to/m.model` loads an existing `.model` file.

Trained models are lossless by construction: the identity normaliser, no dummy prefix, no
whitespace clean-up and byte fallback, so decode(encode(text)) == text for every string and
the byte lengths of the ids of a text add up to its UTF-8 length. Three details make that hold:

* SentencePiece writes a space as the meta symbol "▁" (U+2581), so a real "▁" in the input
  would come back as a space. `encode` therefore cuts the text at every real "▁" and emits
  that character as its three byte-fallback ids (<0xE2><0x96><0x81>), which decode to "▁".
  (Plain SentencePiece, given the same .model file, reads a real "▁" as a space; the ids
  differ from toklab's only for texts that contain U+2581.)
* "▁" is a required character, so a space always has its own piece; otherwise a corpus without
  spaces would leave spaces to byte fallback, which spells them as a real "▁".
* Documents are cut into training "sentences" at line breaks (a run of line breaks starts the
  next sentence, so "\\n" is learnt like any character) and long lines into chunks under
  `max_sentence_length` bytes, so SentencePiece never skips a long line. Encoding always sees
  the whole text.

Options (spec `unigram:8k,key=value,...`): input_sentence_size (training sentences sampled,
with a fixed seed, from a larger input; 0 = all; default 1000000), num_threads (default 16 on
every machine: unigram scores depend slightly on the thread count, so a fixed default keeps
models reproducible), max_sentence_length (bytes per training sentence, default 4192),
character_coverage (default 0.9995), split_digits (default true: every digit is its own piece,
as in Llama and Gemma).

An `spm` model that normalises text, adds a dummy prefix, removes extra whitespace or has no
byte fallback is reported as lossy (`lossless` is False, `lossy_reasons` says why).
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

from toklab.errors import ToklabError
from toklab.segmenters import options as opt
from toklab.segmenters.base import CUT_SPACE, CUT_WORD, EOT, Segmenter, check_vocab_size, cpu_count

META = "\u2581"  # SentencePiece's stand-in for a space
MODEL_FILE = "tokenizer.model"
TRAINING_SEED = 1234  # for SentencePiece's sampling of input_sentence_size sentences
BYTE_PIECE = re.compile(r"^<0x([0-9A-F]{2})>$")
LINE_START = re.compile(r"(?<=[^\r\n])(?=[\r\n])")  # before each run of line breaks
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


# --- reading the model proto (a few fields; no protobuf dependency) --------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _proto_fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of each field of a serialised protobuf message."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > n:
            raise ValueError("truncated protobuf message")
        yield number, value


def model_settings(model_proto: bytes) -> dict[str, Any]:
    """The settings of a SentencePiece ModelProto that decide whether it is lossless."""
    settings: dict[str, Any] = {
        "model_type": "unigram",
        "byte_fallback": False,
        "normalizer": "",
        "precompiled_charsmap": False,
        "normalization_rule_tsv": False,
        "add_dummy_prefix": True,
        "remove_extra_whitespaces": True,
        "escape_whitespaces": True,
        "denormalizer": False,
        "treat_whitespace_as_suffix": False,
    }
    for number, value in _proto_fields(model_proto):
        if number == 2:  # trainer_spec
            for n, v in _proto_fields(value):
                if n == 3:
                    settings["model_type"] = MODEL_TYPES.get(v, str(v))
                elif n == 24:
                    settings["treat_whitespace_as_suffix"] = bool(v)
                elif n == 35:
                    settings["byte_fallback"] = bool(v)
        elif number == 3:  # normalizer_spec
            for n, v in _proto_fields(value):
                if n == 1:
                    settings["normalizer"] = v.decode("utf-8", errors="replace")
                elif n == 2:
                    settings["precompiled_charsmap"] = bool(v)
                elif n == 3:
                    settings["add_dummy_prefix"] = bool(v)
                elif n == 4:
                    settings["remove_extra_whitespaces"] = bool(v)
                elif n == 5:
                    settings["escape_whitespaces"] = bool(v)
                elif n == 6:
                    settings["normalization_rule_tsv"] = bool(v)
        elif number == 5:  # denormalizer_spec
            for n, v in _proto_fields(value):
                if n in (2, 6) and v:
                    settings["denormalizer"] = True
    return settings


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def without_dummy_prefix(model_proto: bytes) -> bytes:
    """The same ModelProto with add_dummy_prefix off: NormalizerSpec (field 3) gets its field 3 set
    to false again at its end (protobuf keeps a scalar field's last value); all else is copied."""
    off = b"\x18\x00"  # field 3, varint, 0
    out, i, n, found = bytearray(), 0, len(model_proto), False
    while i < n:
        start = i
        key, i = _varint(model_proto, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(model_proto, i)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        elif wire == 2:
            length, body = _varint(model_proto, i)
            i = body + length
            if number == 3:
                spec = model_proto[body:i] + off
                out += _encode_varint(key) + _encode_varint(len(spec)) + spec
                found = True
                continue
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out += model_proto[start:i]
    if not found:
        out += _encode_varint((3 << 3) | 2) + _encode_varint(len(off)) + off
    return bytes(out)


def precompiled_charsmap(model_proto: bytes) -> bytes:
    """The normaliser's compiled rule table of a ModelProto (b"" when it has none: no rewriting)."""
    for number, value in _proto_fields(model_proto):
        if number == 3:
            for n, v in _proto_fields(value):
                if n == 2:
                    return bytes(v)
    return b""


def charsmap_cuttable(blob: bytes, whitespace: bool = False) -> bool:
    """Whether SentencePiece's normaliser, driven by the compiled rule table `blob`, maps a text cut
    before a space that follows a letter or digit to the concatenation of the pieces' maps (the
    argument is in `_SentencePieceSegmenter._cut_rule_of`): no rule's source holds a space, and
    every rule whose source ends with a letter or digit (str.isalnum) writes a non-empty string
    that ends with neither a space nor "▁" (with `whitespace`, with no whitespace at all
    (str.isspace) nor "▁": what hf's Strip would remove; see HFTokenizerSegmenter._cut_rule).
    False when the table cannot be read.

    The table is darts-clone's double array (a uint32 size, the units, then the NUL-terminated
    outputs), built from a DAWG: shared suffix states make several keys end at one leaf, so this
    reads units rather than keys. A node unit has bit 31 clear and its input byte in bits 0-7;
    `offset` leads from it to its children (child for byte b at state ^ b) and, when bit 8 is
    set, to the unit holding its output's offset (at state itself). Unused units carry labels too,
    so the nodes are found by walking from the root."""
    if len(blob) <= 4:
        return False
    size = int.from_bytes(blob[:4], "little")
    if size % 4 or size == 0 or 4 + size > len(blob):
        return False
    units = np.frombuffer(blob, dtype="<u4", count=size // 4, offset=4).astype(np.int64)
    outputs = blob[4 + size :]
    offset = (units >> 10) << ((units & (1 << 9)) >> 6)
    byte = units & 0xFF
    label = units & ((1 << 31) | 0xFF)  # a value unit (bit 31) matches no byte
    labels = np.arange(1, 256, dtype=np.int64)
    reached = np.zeros(units.size, dtype=bool)
    frontier = np.zeros(1, dtype=np.int64)  # unit 0 is the root
    for _ in range(1024):  # each round goes one byte deeper; a longer rule is a damaged table
        if frontier.size == 0:
            break
        child = np.unique(frontier ^ offset[frontier])[:, None] ^ labels[None, :]
        ok = child < units.size
        ok[ok] = label[child[ok]] == np.broadcast_to(labels, child.shape)[ok]
        frontier = np.unique(child[ok])
        frontier = frontier[~reached[frontier]]
        reached[frontier] = True
    else:
        return False
    nodes = np.nonzero(reached)[0]
    if (byte[nodes] == 0x20).any():  # some rule's source holds a space
        return False
    states = nodes ^ offset[nodes]
    leaves = nodes[((units[nodes] >> 8) & 1) == 1]
    value_at = leaves ^ offset[leaves]
    if (value_at >= units.size).any():
        return False
    values = units[value_at] & 0x7FFFFFFF
    bad = []  # outputs that are empty or end with a space or "▁"
    for value in np.unique(values).tolist():
        end = outputs.find(b"\0", value)
        try:
            out = outputs[value:end].decode("utf-8") if end > value else ""
        except UnicodeDecodeError:
            out = ""
        if not out or out[-1] in (" ", META) or (whitespace and out[-1].isspace()):
            bad.append(value)
    order = np.argsort(states, kind="stable")
    sorted_states = states[order]
    root = int(offset[0])

    def last_chars(node: int) -> set[int] | None:
        """The code points a key ending at `node` may end with; None if one ends inside a character."""
        found: set[int] = set()
        paths = [(node, 0, 0)]  # (node, bits of the character read so far, continuation bytes read)
        while paths:
            unit, bits, conts = paths.pop()
            b = int(byte[unit])
            if b < 0x80 or b >= 0xC0:  # the character's first byte
                need = 0 if b < 0x80 else 1 if b < 0xE0 else 2 if b < 0xF0 else 3
                if need != conts:
                    return None
                found.add(((b & (0x7F >> (need + (need > 0)))) << (6 * conts)) | bits)
                continue
            state = unit ^ b  # the parents' state
            if conts == 3 or state == root:
                return None
            lo, hi = np.searchsorted(sorted_states, [state, state + 1])
            paths += [(int(nodes[order[i]]), bits | ((b & 0x3F) << (6 * conts)), conts + 1) for i in range(lo, hi)]
        return found

    for leaf in leaves[np.isin(values, bad)].tolist():
        chars = last_chars(leaf)
        if chars is None or any(c > 0x10FFFF or chr(c).isalnum() for c in chars):
            return False
    return True


_charsmap_cuttable = functools.lru_cache(maxsize=8)(charsmap_cuttable)  # nmt_nfkc's takes ~0.3 s


def _raise_unencodable(texts: Sequence[str]) -> None:
    """SentencePiece rejects text that is not valid UTF-8 (lone surrogates) with a cryptic
    RuntimeError; raise the UnicodeEncodeError that says which character instead."""
    for text in texts:
        if isinstance(text, str):
            text.encode("utf-8")


# --- the segmenter ---------------------------------------------------------------------------------


class _SentencePieceSegmenter(Segmenter):
    """A SentencePiece model held as its serialised proto (so it pickles and saves as-is)."""

    def __init__(self, model_proto: bytes, params: dict[str, Any] | None = None, corpus_fingerprint: str | None = None) -> None:
        super().__init__(params, corpus_fingerprint)
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)  # RuntimeError when not a model
        self._inspect()

    def _inspect(self) -> None:
        sp = self._sp
        settings = model_settings(self._proto)
        self.settings = settings
        byte_ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)]
        has_bytes = all(sp.is_byte(i) for i in byte_ids)
        reasons = []
        if settings["model_type"] not in ("unigram", "bpe"):
            reasons.append(f"model type {settings['model_type']}")
        if settings["precompiled_charsmap"] or settings["normalization_rule_tsv"]:
            reasons.append(f"normaliser '{settings['normalizer'] or 'custom'}' changes text")
        if settings["add_dummy_prefix"]:
            reasons.append("add_dummy_prefix adds a space")
        if settings["remove_extra_whitespaces"]:
            reasons.append("remove_extra_whitespaces drops spaces")
        if settings["denormalizer"]:
            reasons.append("a denormaliser rewrites decoded text")
        if not (settings["byte_fallback"] and has_bytes):
            reasons.append("no byte fallback (unknown characters become <unk>)")
        if settings["escape_whitespaces"]:
            space = sp.piece_to_id(META)
            if sp.id_to_piece(space) != META or sp.is_unknown(space) or sp.is_control(space) or sp.is_unused(space):
                reasons.append("no piece for a space")
        self.lossy_reasons: tuple[str, ...] = tuple(reasons)
        self._specials = {sp.id_to_piece(i): i for i in range(sp.get_piece_size()) if sp.is_control(i)}
        # A real "▁" is written as its byte-fallback ids; only done for lossless models.
        self._meta_ids: list[int] | None = [byte_ids[b] for b in META.encode()] if not reasons else None
        self._cut_rule = self._cut_rule_of(settings, reasons)
        # A dummy prefix without whitespace removal (Llama's, Mistral's models): the pieces after the
        # first are encoded by the same model without it (see `_cut_rule_of`).
        continued = self._cut_rule is not None and settings["add_dummy_prefix"] and not settings["remove_extra_whitespaces"]
        self._continuation_proto = without_dummy_prefix(self._proto) if continued else None
        self._continuation = spm.SentencePieceProcessor(model_proto=self._continuation_proto) if continued else None

    def _cut_rule_of(self, settings: dict[str, Any], reasons: list[str]) -> str | None:
        """Where a long text may be cut (see `cut_rule`). Both rules rest on the model: the pieces'
        normalised texts, joined, are the whole text's, and the join is a place no piece crosses
        (a non-"▁" character, then "▁"), so every segmentation of the whole passes through it and
        the best is the best of each side (BPE: no merge reaches across; unigram: the lattice
        splits there, up to Viterbi ties). Hence: unigram or BPE; spaces escaped as "▁"; no piece
        the encoder can use holds a non-"▁" followed by "▁" (pieces across words, e.g. trained
        with split_by_whitespace=false, keep a model whole); and "▁" is a piece of its own, so it
        is never part of a run of unknown characters that the encoder fuses into one <unk>.

        CUT_SPACE (base.space_cuts: before a space that follows a non-space) for a lossless model:
        no normaliser, no dummy prefix, no whitespace removal, so a piece is normalised to itself.

        CUT_WORD (before a space that follows a letter or digit) for any other model with no
        treat_whitespace_as_suffix, add_dummy_prefix and remove_extra_whitespaces both on
        (spm_train's defaults: T5, ALBERT), both off, or only the dummy prefix (Llama, Mistral:
        see below), and no rule table or one that passes `charsmap_cuttable`. The normaliser reads the text left to right, taking the longest rule
        source at each place (unmatched characters are copied); a rule holding no space cannot
        reach across a cut at a space, so the whole text's rules are those of the pieces. Left of
        the cut, the last rule ends at the letter or digit and writes something that ends with
        neither a space nor "▁": so the left piece's text keeps its end (nothing for the
        trailing-whitespace strip) and, in the whole text, the space at the cut follows a
        non-space, so it is kept, as one "▁". The right piece starts with that space: its leading
        spaces (and the characters the table maps to spaces) are dropped and the dummy prefix
        "▁" added, which is exactly what the whole text writes there: that "▁", then, spaces
        after a space being dropped, the same text. (With both options off, the space is a "▁" in
        both.) A right piece of nothing but whitespace writes nothing, and the whole text strips
        that trailing "▁". So the left normalises to text ending in a non-"▁" and the right to
        text starting with "▁": the place no piece crosses. (User-defined pieces, matched as they
        are before the table, hold no space either: checked with the pieces.) Before any other
        character the left piece's text may end in "▁"s that its trailing-whitespace strip
        removes while the whole keeps them: with a table that leaves a real "▁" as it is,
        "a▁ b" is "▁a▁▁b" whole but "▁a" + "▁b" in pieces; hence letters and digits only.
        With a dummy prefix and no whitespace removal, the whole text is "▁" then each character's
        rule, spaces as "▁": the first piece is encoded as it is, the others by the same model with
        add_dummy_prefix off (`without_dummy_prefix`), which writes exactly their part of the whole.
        Whitespace removal without a dummy prefix (a piece's leading space would be dropped), a
        dummy prefix placed after words, or a table that fails the check: encoded whole."""
        sp = self._sp
        if settings["model_type"] not in ("unigram", "bpe") or not settings["escape_whitespaces"] or settings["treat_whitespace_as_suffix"]:
            return None
        if settings["remove_extra_whitespaces"] and not settings["add_dummy_prefix"]:
            return None
        space = sp.piece_to_id(META)
        if sp.id_to_piece(space) != META or sp.is_unknown(space) or sp.is_control(space) or sp.is_unused(space):
            return None
        crossing = re.compile(f"[^{META}]{META}")
        usable = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_byte(i) or sp.is_unknown(i))]
        if any(crossing.search(piece) or " " in piece for piece in usable):
            return None
        if not reasons:
            return CUT_SPACE
        charsmap = precompiled_charsmap(self._proto)
        if charsmap and not _charsmap_cuttable(charsmap):
            return None
        return CUT_WORD

    # --- pickling: the processor is rebuilt from the proto ---------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_sp"], state["_continuation"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        cont = self._continuation_proto
        self._continuation = spm.SentencePieceProcessor(model_proto=cont) if cont is not None else None

    # --- the interface ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def lossless(self) -> bool:
        return not self.lossy_reasons

    @property
    def special_tokens(self) -> dict[str, int]:
        """The model's control pieces (for toklab-trained models just <|endoftext|>)."""
        return dict(self._specials)

    @property
    def model_proto(self) -> bytes:
        """The serialised SentencePiece model (the bytes of a .model file)."""
        return self._proto

    @property
    def cut_rule(self) -> str | None:  # type: ignore[override]
        """CUT_SPACE for a lossless model none of whose pieces crosses its cuts, CUT_WORD for a
        normalising one whose rule table and whitespace settings keep such cuts exact (see
        `_cut_rule_of`); else none."""
        return self._cut_rule

    def encode(self, text: str) -> list[int]:
        if self._long(text):
            return self._encode_cut(text)
        if self._meta_ids is not None and META in text:
            return self._encode_with_meta(text)
        try:
            return self._sp.encode(text, out_type=int)
        except RuntimeError:
            _raise_unencodable([text])
            raise

    def _encode_with_meta(self, text: str) -> list[int]:
        parts = self._sp.encode(text.split(META), out_type=int, num_threads=1)
        ids = list(parts[0])
        for part in parts[1:]:
            ids.extend(self._meta_ids)  # type: ignore[arg-type]
            ids.extend(part)
        return ids

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        return self._encode_batch_cut(texts, workers)

    def _long_pieces(self, text: str, size: int | None = None, workers: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """The pieces after the first go through `_continuation` when there is one (a model whose
        dummy prefix would add a "▁" to each piece; see `_cut_rule_of`)."""
        if self._continuation is None:
            yield from super()._long_pieces(text, size, workers)
            return
        threads = cpu_count() if workers is None else max(1, int(workers))

        def later(pieces: list[str]) -> list[list[int]]:
            try:
                return self._continuation.encode(pieces, out_type=int, num_threads=threads)
            except RuntimeError:
                _raise_unencodable(pieces)
                raise

        yield from self._long_pieces_continued(text, size, lambda pieces: self._encode_pieces(pieces, workers), later)

    def _encode_pieces(self, pieces: list[str], workers: int | None = None) -> list[list[int]]:
        """SentencePiece's own multithreaded batch encoding."""
        texts = list(pieces)
        if not texts:
            return []
        workers = cpu_count() if workers is None else max(1, int(workers))
        with_meta = [i for i, t in enumerate(texts) if META in t] if self._meta_ids is not None else []
        plain = list(texts)
        for i in with_meta:
            plain[i] = ""
        try:
            out = self._sp.encode(plain, out_type=int, num_threads=workers)
        except (RuntimeError, TypeError):
            _raise_unencodable(plain)
            raise
        for i in with_meta:
            out[i] = self._encode_with_meta(texts[i])
        return out

    def decode(self, ids: Sequence[int]) -> str:
        ids = ids.tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
        return self._sp.decode(ids)

    def _piece_bytes(self, token_id: int) -> bytes:
        sp = self._sp
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            return b""
        piece = sp.id_to_piece(token_id)
        if sp.is_byte(token_id):
            match = BYTE_PIECE.match(piece)
            return bytes([int(match.group(1), 16)]) if match else b""
        if self.settings["escape_whitespaces"]:
            piece = piece.replace(META, " ")
        return piece.encode("utf-8")

    def _byte_lengths(self) -> np.ndarray:
        return np.array([len(self._piece_bytes(i)) for i in range(self.vocab_size)], dtype=np.int64)

    def token_bytes(self, token_id: int) -> bytes:
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"token id {token_id} is out of range for a vocabulary of {self.vocab_size}")
        return self._piece_bytes(token_id)

    # --- saving ---------------------------------------------------------------------------------

    def _save_files(self, directory: Path) -> None:
        (directory / MODEL_FILE).write_bytes(self._proto)

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "_SentencePieceSegmenter":
        path = Path(directory) / MODEL_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ToklabError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            segmenter = cls(data, params=manifest.get("params"))
        except Exception:  # sentencepiece and the proto reader raise several kinds for a damaged file
            raise ToklabError(f"cannot read {path}: it is damaged or not a sentencepiece model") from None
        check_vocab_size(path, segmenter.vocab_size, manifest)
        return segmenter


# --- training ---------------------------------------------------------------------------------------

DEFAULT_MAX_SENTENCE_LENGTH = 4192
# Unigram EM sums expected counts per thread, so piece scores depend (in the 5th digit) on the
# thread count. A fixed default, not the number of cores, gives the same model on every machine.
DEFAULT_THREADS = 16
MAX_THREADS = 1024  # SentencePiece's own bound
MAX_INT32 = 2**31 - 1  # SentencePiece reads these options as 32-bit integers
MIN_SENTENCE_LENGTH = 16
TRAINING_OPTIONS = (
    opt.Option("input_sentence_size", "whole", 1_000_000, "lines sampled for training (0: all)", low=0, high=MAX_INT32),
    opt.Option("num_threads", "whole", DEFAULT_THREADS, "trainer threads (fixed: the same model on every machine)", low=1, high=MAX_THREADS),
    opt.Option("max_sentence_length", "whole", DEFAULT_MAX_SENTENCE_LENGTH, "longer lines are cut to at most this many bytes", low=MIN_SENTENCE_LENGTH, high=MAX_INT32),
    opt.Option("character_coverage", "real", 0.9995, "share of characters given pieces (the rest: byte fallback)", low=0.9, high=1.0),
    opt.Option("split_digits", "bool", True, "every digit is a piece of its own"),
)
OPTIONS = opt.option_table(TRAINING_OPTIONS)


def training_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """Spec options (strings) -> typed trainer options, defaults filled in, each within its bounds."""
    opt.check_unknown(kind, options, OPTIONS)
    resolved: dict[str, Any] = {name: option.default for name, option in OPTIONS.items()}
    for key, value in options.items():
        resolved[key] = OPTIONS[key].check(kind, value)
    return resolved


def _chunks(line: str, limit: int) -> Iterator[str]:
    """Cut a line into pieces of at most `limit` UTF-8 bytes, before a space where one is near."""
    data = line.encode("utf-8")
    start = 0
    while len(data) - start > limit:
        end = start + limit
        while data[end] & 0xC0 == 0x80:  # never cut inside a character
            end -= 1
        space = data.rfind(b" ", start + limit // 2, end)
        if space > start:
            end = space
        yield data[start:end].decode("utf-8")
        start = end
    yield data[start:].decode("utf-8")


def training_sentences(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
    """Documents -> SentencePiece training sentences: lines (each starting with the line breaks
    before it; SentencePiece strips trailing ones) in chunks of at most `max_bytes` bytes."""
    for text in texts:
        for line in LINE_START.split(text):
            if not line.strip("\r\n"):
                continue
            if len(line) * 4 <= max_bytes or len(line.encode("utf-8")) <= max_bytes:
                yield line
            else:
                yield from _chunks(line, max_bytes)


def _training_error(spec: str, message: str, coverage: float) -> str:
    too_high = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
    if too_high:
        return (f"cannot train {spec}: the training text supports at most {too_high.group(2)} ids; "
                "use a smaller vocabulary size or more text")
    too_small = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_small:
        return (f"cannot train {spec}: it needs at least {too_small.group(2)} ids (256 bytes, special tokens and "
                f"the characters covering {coverage:g} of the text); use a larger size or a lower character_coverage")
    if "sentences_.empty()" in message:
        return f"cannot train {spec}: the training text is empty"
    first = " ".join(message.split())[:300]
    return f"sentencepiece could not train {spec}: {first}"


class _Feed:
    """Hands sentences to the trainer; an exception from the corpus (which the trainer would turn
    into a RuntimeError) ends the input and is kept, to be raised as itself afterwards."""

    def __init__(self, sentences: Iterator[str]) -> None:
        self.sentences = sentences
        self.error: BaseException | None = None

    def __iter__(self) -> "_Feed":
        return self

    def __next__(self) -> str:
        try:
            return next(self.sentences)
        except StopIteration:
            raise
        except BaseException as exc:  # noqa: BLE001 - re-raised by train
            self.error = exc
            raise StopIteration from None


class _TrainedSentencePiece(_SentencePieceSegmenter):
    trainable = True
    train_in_child = True  # SentencePieceTrainer (C++) never looks at Ctrl-C
    option_info = TRAINING_OPTIONS
    model_type: ClassVar[str] = ""
    min_vocab_size = 259
    min_vocab_reason = "256 bytes, <unk>, <|endoftext|> and a piece for a space"

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        training_options(cls.kind, options)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, **options: str) -> "_TrainedSentencePiece":
        opts = training_options(cls.kind, options)
        opt.vocab_size_range(cls.kind, vocab_size, cls.min_vocab_size, cls.max_vocab_size, cls.min_vocab_reason)
        spec = f"{cls.kind}:{vocab_size}"
        model = io.BytesIO()
        feed = _Feed(training_sentences(texts, opts["max_sentence_length"]))
        spm.set_random_generator_seed(TRAINING_SEED)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=feed,
                model_writer=model,
                model_type=cls.model_type,
                vocab_size=vocab_size,
                input_sentence_size=opts["input_sentence_size"],
                shuffle_input_sentence=True,  # a seeded reservoir sample when the input is larger
                num_threads=opts["num_threads"],
                max_sentence_length=opts["max_sentence_length"],
                character_coverage=opts["character_coverage"],
                split_digits=opts["split_digits"],
                byte_fallback=True,
                normalization_rule_name="identity",
                add_dummy_prefix=False,
                remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True,
                required_chars=META,  # a space always has its piece, even in text without spaces
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                control_symbols=[EOT],  # its own id; never matched in text
                minloglevel=2,
            )
        except RuntimeError as exc:
            if feed.error is not None:
                raise feed.error from None
            raise ToklabError(_training_error(spec, str(exc), opts["character_coverage"])) from None
        if feed.error is not None:
            raise feed.error
        segmenter = cls(model.getvalue(), params=opts)
        if not segmenter.lossless:  # cannot happen with the settings above
            raise AssertionError(f"{spec} trained a lossy model: {'; '.join(segmenter.lossy_reasons)}")
        return segmenter


class UnigramSegmenter(_TrainedSentencePiece):
    """`unigram:SIZE`: a SentencePiece unigram language model."""

    kind = "unigram"
    model_type = "unigram"
    summary = "SentencePiece unigram trained on the train split; lossless (byte fallback, identity normalisation)"


class SentencePieceBPESegmenter(_TrainedSentencePiece):
    """`spm-bpe:SIZE`: SentencePiece's BPE."""

    kind = "spm-bpe"
    model_type = "bpe"
    summary = "SentencePiece BPE trained on the train split; lossless (byte fallback, identity normalisation)"


class SentencePieceFileSegmenter(_SentencePieceSegmenter):
    """`spm:PATH`: an existing SentencePiece .model file."""

    kind = "spm"
    summary = "an existing SentencePiece .model file (flagged when it is lossy, e.g. NFKC)"
    arg_syntax = "FILE.model"

    @staticmethod
    def _path(arg: str | None, options: dict[str, str]) -> Path:
        if not arg:
            raise ToklabError("'spm' needs the path of a sentencepiece model, e.g. spm:path/to/m.model")
        if options:
            raise ToklabError(f"'spm' takes no options (got {', '.join(sorted(options))})")
        path = Path(arg).expanduser()
        if path.is_dir() and (path / MODEL_FILE).is_file():
            path = path / MODEL_FILE
        if not path.exists():
            raise ToklabError(f"sentencepiece model {path} does not exist")
        if path.is_dir():
            raise ToklabError(f"{path} is a folder holding no {MODEL_FILE}; give the path of a sentencepiece .model file")
        return path

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        cls._path(arg, options)

    @classmethod
    def from_spec(cls, arg: str | None, **options: str) -> "SentencePieceFileSegmenter":
        path = cls._path(arg, options)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ToklabError(f"sentencepiece model {path} does not exist") from None
        except OSError as exc:
            raise ToklabError(f"cannot read sentencepiece model {path}: {exc.strerror or exc}") from None
        try:
            return cls(data, params={"arg": arg})
        except Exception:  # sentencepiece and the proto reader raise several kinds for a damaged file
            raise ToklabError(f"{path} is not a sentencepiece model") from None
