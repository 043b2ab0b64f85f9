"""Pretrained tokenisers: `tiktoken:<name|file.tiktoken>` and `hf:<tokenizer.json|folder|hub id>`.

Neither kind is trainable; both are built from a spec with `from_spec`, saved as their library's
own file format beside the manifest, and loaded back without the network.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import tempfile
import types
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np

from toklab.errors import ToklabError, one_line
from toklab.network import REACH_TIMEOUT_S, hub_offline_reason, reachable
from toklab.segmenters.options import Option
from toklab.segmenters.base import CUT_NEWLINE, CUT_SPACE, CUT_WORD, Segmenter, SegmenterUnavailable, check_vocab_size, cpu_count, reading
from toklab.segmenters.bpe import PATTERNS as BPE_PATTERNS, UNICODE_TO_BYTE

DEFAULT_PAT = "cl100k_base"  # whose pattern a bare .tiktoken file is split with
RANKS_FILE = "ranks.tiktoken"
TIKTOKEN_META = "tiktoken.json"
HF_FILE = "tokenizer.json"


def _reachable(host: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    return reachable(host, timeout)  # a module-level name, so tests can pretend to be offline


# ================================================================================================
# tiktoken
# ================================================================================================


def _tiktoken_cache_dir() -> str:
    """The folder tiktoken reads cached vocabularies from (mirrors tiktoken.load.read_file_cached)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _known_encodings() -> list[str]:
    import tiktoken

    return list(tiktoken.list_encoding_names())


def _constructor_info(name: str) -> dict[str, Any] | None:
    """What a registered encoding is made of, without reading or downloading its vocabulary.

    tiktoken's constructors (tiktoken_ext.openai_public) compute the pattern and special tokens
    inline and call `load_tiktoken_bpe` / `data_gym_to_mergeable_bpe_ranks` for the ranks. We run
    a copy of the constructor whose globals replace those two loaders with stubs that record the
    files (url, sha256) it would read. Returns {"pat_str", "special_tokens", "files"}, or None
    when the constructor cannot be introspected this way (then callers fall back to tiktoken).
    """
    import tiktoken.registry

    _known_encodings()  # makes tiktoken find its constructors
    constructors = getattr(tiktoken.registry, "ENCODING_CONSTRUCTORS", None) or {}
    ctor = constructors.get(name)
    if not isinstance(ctor, types.FunctionType):
        return None
    files: list[tuple[str, str | None]] = []

    def fake_load_tiktoken_bpe(path: str, expected_hash: str | None = None) -> dict[bytes, int]:
        files.append((path, expected_hash))
        return {}

    def fake_data_gym(vocab_bpe_file: str, encoder_json_file: str, vocab_bpe_hash: str | None = None,
                      encoder_json_hash: str | None = None, **_: Any) -> dict[bytes, int]:
        files.append((vocab_bpe_file, vocab_bpe_hash))
        files.append((encoder_json_file, encoder_json_hash))
        return {}

    module_globals = ctor.__globals__
    patched = dict(module_globals)
    patched["load_tiktoken_bpe"] = fake_load_tiktoken_bpe
    patched["data_gym_to_mergeable_bpe_ranks"] = fake_data_gym
    for key, value in module_globals.items():  # constructors that call one another (o200k_harmony)
        if isinstance(value, types.FunctionType) and value.__globals__ is module_globals:
            patched[key] = types.FunctionType(value.__code__, patched, value.__name__, value.__defaults__, value.__closure__)
    try:
        made = patched[ctor.__name__]() if ctor.__name__ in patched else None
    except Exception:
        return None
    if not isinstance(made, dict) or not isinstance(made.get("pat_str"), str) or not files:
        return None
    return {"pat_str": made["pat_str"], "special_tokens": dict(made.get("special_tokens") or {}), "files": files}


def _cached_ok(url: str, expected_hash: str | None, cache_dir: str) -> bool:
    """True when tiktoken will find `url` in its cache (same key and hash check as read_file_cached)."""
    if not cache_dir:
        return False
    path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    return expected_hash is None or hashlib.sha256(data).hexdigest() == expected_hash


def _offline_message(name: str, cache_dir: str, why: str) -> str:
    where = f"in {cache_dir}" if cache_dir else "cached (TIKTOKEN_CACHE_DIR is empty, which disables the cache)"
    return (
        f"tiktoken encoding '{name}' is not available: its vocabulary is not {where} and it cannot be downloaded "
        f"({why}); set TIKTOKEN_CACHE_DIR to a folder holding the tiktoken vocabulary files"
    )


def _get_encoding(name: str) -> Any:
    """tiktoken.get_encoding(name), failing fast with a one-line ToklabError when it would need a
    download that cannot happen (tiktoken downloads with `requests.get` and no timeout)."""
    import tiktoken
    import tiktoken.registry

    known = _known_encodings()
    if name not in known:
        raise ToklabError(f"unknown tiktoken encoding '{name}' (known: {', '.join(known)}; or the path of a .tiktoken file)")
    loaded = getattr(tiktoken.registry, "ENCODINGS", {})
    if name in loaded:
        return loaded[name]
    cache_dir = _tiktoken_cache_dir()
    info = _constructor_info(name)
    if info is not None:
        missing = [url for url, sha in info["files"] if not _cached_ok(url, sha, cache_dir)]
        if missing:
            hosts = sorted({urlparse(url).hostname or url for url in missing})
            unreachable = [h for h in hosts if not _reachable(h)]
            if unreachable:
                raise SegmenterUnavailable(_offline_message(name, cache_dir, f"cannot reach {', '.join(unreachable)}"))
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # requests/urllib3/OSError/hash mismatch/...: all mean "not available"
        raise SegmenterUnavailable(_offline_message(name, cache_dir, one_line(exc))) from None


def offline_encodings() -> list[dict[str, Any]]:
    """Every encoding tiktoken knows, each `{"name", "available", "why"}`: available is True when it
    is loaded already or every file it needs is in tiktoken's cache (hash checked), False when a
    file is missing, None when that cannot be told without loading it. Reads no network."""
    import tiktoken.registry

    cache_dir = _tiktoken_cache_dir()
    loaded = getattr(tiktoken.registry, "ENCODINGS", {})
    out: list[dict[str, Any]] = []
    for name in _known_encodings():
        if name in loaded:
            out.append({"name": name, "available": True, "why": "loaded"})
            continue
        info = _constructor_info(name)
        if info is None:
            out.append({"name": name, "available": None, "why": "cannot tell without loading it"})
            continue
        missing = [url for url, sha in info["files"] if not _cached_ok(url, sha, cache_dir)]
        where = cache_dir or "(TIKTOKEN_CACHE_DIR is empty: no cache)"
        why = f"in {where}" if not missing else f"{len(missing)} of {len(info['files'])} file(s) not in {where}"
        out.append({"name": name, "available": not missing, "why": why})
    return out


def _pattern_of(name: str) -> str:
    known = _known_encodings()
    if name not in known:
        raise ToklabError(f"unknown tiktoken pattern '{name}' for pat= (known: {', '.join(known)})")
    info = _constructor_info(name)
    if info is not None:
        return info["pat_str"]
    return _get_encoding(name)._pat_str


# The encodings whose split pattern newline_cuts' rule is known exact for (see its docstring).
CUTTABLE_ENCODINGS = ("gpt2", "r50k_base", "p50k_base", "p50k_edit", "cl100k_base", "o200k_base", "o200k_harmony")


@functools.lru_cache(maxsize=1)
def _cuttable_patterns() -> frozenset[str]:
    known = set(_known_encodings())
    infos = [_constructor_info(name) for name in CUTTABLE_ENCODINGS if name in known]
    return frozenset([*(i["pat_str"] for i in infos if i is not None), *BPE_PATTERNS.values()])


def read_tiktoken_file(path: str | os.PathLike) -> dict[bytes, int]:
    """The ranks of a `.tiktoken` file (base64 token, space, rank per line).

    Same format as tiktoken.load.load_tiktoken_bpe, parsed here because that function copies every
    file it reads, local ones included, into TIKTOKEN_CACHE_DIR (which may be a shared, read-only
    folder).
    """
    path = Path(path)
    try:
        contents = path.read_bytes()
    except OSError as exc:
        raise ToklabError(f"cannot read {path}: {exc.strerror or exc}") from None
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(contents.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except Exception:
            raise ToklabError(f"{path}:{number} is not a .tiktoken line (base64 token, space, rank): {line[:60]!r}") from None
    if not ranks:
        raise ToklabError(f"{path} holds no tokens; expected a .tiktoken file (base64 token, space, rank per line)")
    return ranks


def _make_encoding(name: str, pat_str: str, ranks: dict[bytes, int], special_tokens: dict[str, int]) -> Any:
    import tiktoken

    try:
        return tiktoken.Encoding(name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special_tokens)
    except Exception as exc:
        raise ToklabError(f"cannot build tiktoken encoding '{name}': {one_line(exc)}") from None


class TiktokenSegmenter(Segmenter):
    """An OpenAI tiktoken encoding, by name or from a .tiktoken ranks file (`pat=` names whose split
    pattern to use; default cl100k_base's). A file brings no special tokens."""

    kind = "tiktoken"
    summary = "an OpenAI tiktoken encoding by name, or a .tiktoken ranks file"
    arg_syntax = "NAME|FILE.tiktoken"
    option_info = (Option("pat", "text", DEFAULT_PAT, "for a .tiktoken file: the encoding whose split pattern it uses"),)

    def __init__(self, encoding: Any, params: dict[str, Any] | None = None, corpus_fingerprint: str | None = None) -> None:
        super().__init__(params, corpus_fingerprint)
        self.encoding = encoding
        self._table: list[bytes | None] | None = None

    @classmethod
    def _resolve(cls, arg: str | None, options: dict[str, str]) -> tuple[str | None, Path | None]:
        """(encoding name, None) or (None, .tiktoken file) for a spec; a mistake is a ToklabError."""
        known = _known_encodings()
        if not arg:
            raise ToklabError(f"'tiktoken' needs an encoding name ({', '.join(known)}) or a .tiktoken file, e.g. tiktoken:cl100k_base")
        unknown = sorted(set(options) - {"pat"})
        if unknown:
            raise ToklabError(f"unknown option(s) for tiktoken: {', '.join(unknown)} (only pat=<encoding name>, for a .tiktoken file)")
        if arg in known:
            if options:
                raise ToklabError(f"pat= applies only to a .tiktoken file, not to the named encoding '{arg}'")
            return arg, None
        path = Path(arg).expanduser()
        looks_like_path = path.suffix == ".tiktoken" or os.sep in arg or "/" in arg or path.exists()
        if not looks_like_path:
            raise ToklabError(f"unknown tiktoken encoding '{arg}' (known: {', '.join(known)}; or the path of a .tiktoken file)")
        if not path.is_file():
            raise ToklabError(f"no such .tiktoken file: {path}")
        pat = options.get("pat", DEFAULT_PAT)
        if pat not in known:
            raise ToklabError(f"unknown tiktoken pattern '{pat}' for pat= (known: {', '.join(known)})")
        return None, path

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        cls._resolve(arg, options)

    @classmethod
    def known_args(cls) -> list[dict[str, Any]]:
        return offline_encodings()

    @classmethod
    def from_spec(cls, arg: str | None, **options: str) -> "TiktokenSegmenter":
        name, path = cls._resolve(arg, options)
        params: dict[str, Any] = {"arg": arg, **options}
        if name is not None:
            return cls(_get_encoding(name), params)
        assert path is not None
        ranks = read_tiktoken_file(path)
        pat_str = _pattern_of(options.get("pat", DEFAULT_PAT))
        return cls(_make_encoding(path.stem, pat_str, ranks, {}), params)

    # --- the interface ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return int(self.encoding.n_vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {s: self.encoding.encode_single_token(s) for s in sorted(self.encoding.special_tokens_set)}

    @property
    def cut_rule(self) -> str | None:  # type: ignore[override]
        """newline_cuts' rule for the patterns it is known exact for (OpenAI's, bpe's); else none."""
        return CUT_NEWLINE if getattr(self.encoding, "_pat_str", None) in _cuttable_patterns() else None

    def encode(self, text: str) -> list[int]:
        if self._long(text):
            return self._encode_cut(text)
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        return self._encode_batch_cut(texts, workers)

    def _encode_pieces(self, pieces: list[str], workers: int | None = None) -> list[list[int]]:
        if len(pieces) == 1:
            return [self.encoding.encode_ordinary(pieces[0])]
        threads = cpu_count() if workers is None else max(1, workers)
        return self.encoding.encode_ordinary_batch(pieces, num_threads=threads)

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids), errors="replace")

    def _token_table(self) -> list[bytes | None]:
        """Index -> bytes for every mergeable id, None for specials and unused ids (gaps)."""
        if self._table is None:
            specials = set(self.encoding.special_tokens_set)
            special_ids = {self.encoding.encode_single_token(s) for s in specials}
            decode_one = self.encoding.decode_single_token_bytes
            table: list[bytes | None] = []
            for i in range(self.vocab_size):
                if i in special_ids:
                    table.append(None)
                    continue
                try:
                    table.append(decode_one(i))
                except KeyError:
                    table.append(None)
            self._table = table
        return self._table

    def _byte_lengths(self) -> np.ndarray:
        return np.fromiter((0 if b is None else len(b) for b in self._token_table()), dtype=np.int64, count=self.vocab_size)

    def token_bytes(self, token_id: int) -> bytes:
        table = self._token_table()
        return (table[token_id] or b"") if 0 <= token_id < len(table) else b""

    # --- saving ----------------------------------------------------------------------------------

    def _save_files(self, directory: Path) -> None:
        lines = [base64.b64encode(token) + b" " + str(rank).encode() for rank, token in enumerate(self._token_table()) if token is not None]
        (directory / RANKS_FILE).write_bytes(b"\n".join(lines) + b"\n")
        meta = {"name": self.encoding.name, "pat_str": self.encoding._pat_str, "special_tokens": self.special_tokens}
        (directory / TIKTOKEN_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "TiktokenSegmenter":
        path = directory / TIKTOKEN_META
        with reading(path):
            meta = json.loads(path.read_text(encoding="utf-8"))
            name, pat_str = str(meta["name"]), meta["pat_str"]
            if not isinstance(pat_str, str):
                raise ValueError("pat_str is not a string")
            specials = {str(k): int(v) for k, v in meta["special_tokens"].items()}
        ranks = read_tiktoken_file(directory / RANKS_FILE)
        with reading(path):
            encoding = _make_encoding(name, pat_str, ranks, specials)
        segmenter = cls(encoding, manifest.get("params"), manifest.get("corpus_fingerprint"))
        check_vocab_size(directory / RANKS_FILE, segmenter.vocab_size, manifest)
        return segmenter

    # --- pickling --------------------------------------------------------------------------------
    # tiktoken.Encoding pickles itself: a registered encoding by name (re-read from
    # TIKTOKEN_CACHE_DIR in the receiving process), any other with its ranks. We drop only the
    # derived tables.

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_table"] = None
        state["_lengths"] = None
        return state


# ================================================================================================
# Hugging Face tokenizers
# ================================================================================================

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
# Round-trip probe: spaces, newlines, case, accents (composed and decomposed), emoji, CJK, RTL,
# control characters, compatibility forms, special-token text.
PROBES = (
    "",
    "Hello World",
    "hello",
    "  two  leading and trailing spaces  ",
    "tabs\tand\nnew\n\nlines\r\n",
    "MiXeD CaSe ÀÉÎÕÜ",
    "café naïve e\u0301 \u0301",
    "👩‍👩‍👧 🎉 😀",
    "日本語の文章。中文字符",
    "שלום مرحبا",
    "\x00\x01\x1f\x7f control",
    "ﬁ ① ＡＢＣ ½",
    "a\u00a0b\u2028c\u200bd",
    "<|endoftext|> <s> </s> [CLS]",
)




# Cutting long texts (HFTokenizerSegmenter._cut_rule): normalisers that rewrite each character on
# its own (composition, the one exception, never reaches across a space or newline: both are
# starters that compose with nothing) and pre-tokenisers that only split, whitespace removed.
CHARWISE_NORMALIZERS = frozenset({"BertNormalizer", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents"})
WHITESPACE_PRE_TOKENIZERS = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})
SPLIT_PRE_TOKENIZERS = WHITESPACE_PRE_TOKENIZERS | {"Punctuation", "Digits"}
META = "\u2581"  # SentencePiece's space


def _parts(component: Any, key: str) -> list[dict[str, Any]] | None:
    """The parts of a normaliser or pre-tokeniser (nested Sequences flattened; [] for none), or
    None when it is not what a tokenizer.json holds."""
    if component is None:
        return []
    if not isinstance(component, dict):
        return None
    if component.get("type") != "Sequence":
        return [component]
    out: list[dict[str, Any]] = []
    for part in component.get(key) or []:
        inner = _parts(part, key)
        if inner is None:
            return None
        out += inner
    return out


def _is_replace_runs(part: dict[str, Any], content: str) -> bool:
    """A Replace normaliser that writes each run of two or more spaces as `content` (SentencePiece
    converted by `transformers`: " " before WhitespaceSplit, "▁" before Metaspace)."""
    return part.get("type") == "Replace" and part.get("pattern") == {"Regex": " {2,}"} and part.get("content") == content


def _is_replace_space(part: dict[str, Any]) -> bool:
    """A Replace normaliser that writes each space as "▁" (SentencePiece-converted tokenizers)."""
    return part.get("type") == "Replace" and part.get("pattern") == {"String": " "} and part.get("content") == META


def _walk(component: Any, type_name: str) -> list[dict[str, Any]]:
    """The parts of a tokenizer.json component (possibly a Sequence) whose type is `type_name`."""
    if not isinstance(component, dict):
        return []
    found = [component] if component.get("type") == type_name else []
    for key in ("pretokenizers", "decoders", "normalizers", "processors"):
        for part in component.get(key) or []:
            found.extend(_walk(part, type_name))
    return found


class HFTokenizerSegmenter(Segmenter):
    """A Hugging Face `tokenizers` tokenizer (tokenizer.json).

    Byte lengths and losslessness:
    - Byte-level tokenizers (GPT-2 style: a ByteLevel pre-tokenizer and decoder) have tokens that
      stand for fixed bytes: each vocabulary string maps through the GPT-2 byte<->unicode table.
      They are reported lossless when, in addition, there is no normalizer, no prefix space is
      added, no added token strips whitespace, and a round trip of PROBES succeeds.
    - Any other tokenizer (WordPiece, Metaspace/SentencePiece, ...) is reported lossy
      (`lossless` False, so tables flag it): its tokens have no context-free byte length. Their
      lengths are an approximation: the UTF-8 growth of decode([anchor, id]) over decode([anchor])
      (this counts the space a WordPiece word or a Metaspace "▁" piece stands for); byte-fallback
      tokens <0xNN> count 1.
    Special (added, special=True) tokens have length 0. `encode` treats special-token strings in
    the text as ordinary text (as tiktoken's encode_ordinary does): it encodes with a copy of the
    tokenizer whose special added tokens are removed.
    """

    kind = "hf"
    summary = "a Hugging Face tokenizers tokenizer (lossless only when byte-level and round-tripping)"
    arg_syntax = "FILE.json|FOLDER|HUB_ID"
    option_info = (Option("revision", "text", None, "for a hub id: the revision (branch, tag or commit)"),)

    def __init__(self, tokenizer: Any, params: dict[str, Any] | None = None, corpus_fingerprint: str | None = None) -> None:
        super().__init__(params, corpus_fingerprint)
        self._setup(tokenizer)

    def _setup(self, tokenizer: Any) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = tokenizer
        self._config: dict[str, Any] = json.loads(tokenizer.to_str())
        added = self._config.get("added_tokens") or []
        self._specials = {t["content"]: int(t["id"]) for t in added if t.get("special")}
        self._added_plain = {int(t["id"]): t for t in added if not t.get("special")}
        if self._specials:
            ordinary = dict(self._config)
            ordinary["added_tokens"] = [t for t in added if not t.get("special")]
            self._ordinary = Tokenizer.from_str(json.dumps(ordinary))
        else:
            self._ordinary = tokenizer
        self._byte_level = self._is_byte_level()
        self._lossless: bool | None = None
        self._continuation: Any = None  # set by _cut_rule when later pieces need another tokenizer
        self._cut = self._cut_rule()

    # --- building --------------------------------------------------------------------------------

    @classmethod
    def _resolve(cls, arg: str | None, options: dict[str, str]) -> tuple[Path | None, str | None]:
        """(tokenizer.json file, None) or (None, hub id) for a spec; a mistake is a ToklabError."""
        if not arg:
            raise ToklabError("'hf' needs a tokenizer.json, a folder holding one, or a hub id, e.g. hf:path/tokenizer.json")
        unknown = sorted(set(options) - {"revision"})
        if unknown:
            raise ToklabError(f"unknown option(s) for hf: {', '.join(unknown)} (only revision=, for a hub id)")
        path = Path(arg).expanduser()
        if path.is_dir():
            if not (path / HF_FILE).is_file():
                raise ToklabError(f"{path} holds no {HF_FILE}")
            path = path / HF_FILE
        if path.is_file():
            return path, None
        if not HUB_ID.match(arg) or arg.endswith(".json") or ".." in arg:
            raise ToklabError(f"no such tokenizer file: {path}")
        return None, arg

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        cls._resolve(arg, options)

    @classmethod
    def from_spec(cls, arg: str | None, **options: str) -> "HFTokenizerSegmenter":
        path, hub_id = cls._resolve(arg, options)
        params: dict[str, Any] = {"arg": arg, **options}
        if path is not None:
            return cls(_tokenizer_from_file(path), params)
        assert hub_id is not None
        return cls(_tokenizer_from_hub(hub_id, options.get("revision")), params)

    # --- the interface ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        # Every id must index the byte-length table: cover the largest added id too.
        size = int(self.tokenizer.get_vocab_size(with_added_tokens=True))
        top = max([*self._specials.values(), *self._added_plain], default=-1)
        return max(size, top + 1)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def byte_level(self) -> bool:
        return self._byte_level

    @property
    def lossless(self) -> bool:
        if self._lossless is None:
            self._lossless = self._byte_level and self._structurally_lossless() and all(self.decode(self.encode(t)) == t for t in PROBES)
        return self._lossless

    @property
    def cut_rule(self) -> str | None:  # type: ignore[override]
        """The rule its pipeline is known exact for (see `_cut_rule`); else none: the tokenizer's
        normaliser, pre-tokeniser or model may see across a cut."""
        return self._cut

    def encode(self, text: str) -> list[int]:
        if self._long(text):
            return self._encode_cut(text)
        return self._ordinary.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        return self._encode_batch_cut(texts, workers)

    def _long_pieces(self, text: str, size: int | None = None, workers: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """The pieces after the first go through `_continuation` when there is one (a tokenizer
        that prepends "▁" to every text would add one to each piece; see `_cut_rule`)."""
        if self._continuation is None:
            yield from super()._long_pieces(text, size, workers)
            return
        continuation = self._continuation
        later = lambda pieces: [e.ids for e in continuation.encode_batch(pieces, add_special_tokens=False)]  # noqa: E731
        yield from self._long_pieces_continued(text, size, lambda pieces: self._encode_pieces(pieces, workers), later)

    def _encode_pieces(self, pieces: list[str], workers: int | None = None) -> list[list[int]]:
        # Rust, on all cores. `tokenizers` takes no per-call thread count: RAYON_NUM_THREADS and
        # TOKENIZERS_PARALLELISM govern it, and its batch path beats single calls even on one core.
        return [e.ids for e in self._ordinary.encode_batch(list(pieces), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        if token_id in self._specials.values():
            return b""
        if self._byte_level:
            raw = self._raw_bytes(token_id)
            if raw is not None:
                return raw
        return self.decode([token_id]).encode("utf-8", errors="surrogateescape")

    def _raw_bytes(self, token_id: int) -> bytes | None:
        """The bytes a byte-level token stands for; None when it is not a byte-level string."""
        if token_id in self._added_plain:
            return self._added_plain[token_id]["content"].encode("utf-8")
        token = self.tokenizer.id_to_token(token_id)
        if token is None:
            return None
        try:
            return bytes(UNICODE_TO_BYTE[c] for c in token)
        except KeyError:
            return token.encode("utf-8")  # not in the table: stands for itself

    def _byte_lengths(self) -> np.ndarray:
        size = self.vocab_size
        lengths = np.zeros(size, dtype=np.int64)
        special_ids = set(self._specials.values())
        if self._byte_level:
            # _is_byte_level checked that every model token is a string of table characters
            for token, i in (self._config.get("model") or {}).get("vocab", {}).items():
                if 0 <= i < size:
                    lengths[i] = len(token)  # one table character per byte
            for i, added in self._added_plain.items():
                lengths[i] = len(added["content"].encode("utf-8"))
            lengths[list(special_ids)] = 0
            return lengths
        return self._approximate_lengths(size, special_ids)

    def _approximate_lengths(self, size: int, special_ids: set[int]) -> np.ndarray:
        lengths = np.zeros(size, dtype=np.int64)
        anchor_ids = self._ordinary.encode("a", add_special_tokens=False).ids
        anchor = anchor_ids[:1]
        base = len(self.tokenizer.decode(anchor, skip_special_tokens=False).encode("utf-8")) if anchor else 0
        ids = [i for i in range(size) if i not in special_ids and self.tokenizer.id_to_token(i) is not None]
        texts = self.tokenizer.decode_batch([anchor + [i] for i in ids], skip_special_tokens=False)
        for i, text in zip(ids, texts):
            token = self.tokenizer.id_to_token(i)
            if BYTE_FALLBACK.match(token):
                lengths[i] = 1
            else:
                lengths[i] = max(0, len(text.encode("utf-8", errors="surrogateescape")) - base)
        return lengths

    # --- structure -------------------------------------------------------------------------------

    def _is_byte_level(self) -> bool:
        """ByteLevel pre-tokenizer and decoder: every vocabulary string is a run of GPT-2 table
        characters, so every token stands for fixed bytes."""
        cfg = self._config
        if not _walk(cfg.get("pre_tokenizer"), "ByteLevel") or not _walk(cfg.get("decoder"), "ByteLevel"):
            return False
        vocab = (cfg.get("model") or {}).get("vocab")
        if isinstance(vocab, dict):
            plain = {t["content"] for t in self._added_plain.values()}
            return all(all(c in UNICODE_TO_BYTE for c in token) for token in vocab if token not in self._specials and token not in plain)
        return False

    def _cut_rule(self) -> str | None:
        """Where a long text can be cut with the ids of the pieces, joined, those of the whole; None
        (encoded whole) for any pipeline not argued here. Common to all: no truncation or padding
        (either would act on each piece), and no ordinary added token that strips the whitespace
        beside it (added tokens are matched on the whole text before anything else, so one must
        not hold the character a cut is made at, as the rules below require).

        - CUT_NEWLINE (base.newline_cuts), GPT-2 style: no normaliser, then ByteLevel with its own
          regex (GPT-2's) or a Split by a pattern of `_cuttable_patterns` then ByteLevel without
          one, no prefix space: that pattern alone decides the pre-tokens, and ends one at the cut.
          No added token holds a newline.
        - CUT_SPACE (base.space_cuts: before a space that follows a non-space), WordPiece/BERT
          style: normalisers of CHARWISE_NORMALIZERS only (or none) and pre-tokenisers of
          SPLIT_PRE_TOKENIZERS, one of them removing whitespace (BertPreTokenizer, Whitespace,
          WhitespaceSplit); any model. Each normaliser rewrites character by character
          (BertNormalizer: controls dropped, whitespace to " ", spaces around CJK, accents,
          lowercase; Lowercase and StripAccents likewise; a final sigma's context ends at a space
          too), except that NFC/NFKC compose and
          every normal form reorders combining marks, both of which stop at a starter that
          composes with nothing, as a space is: so the normalised whole is the normalised pieces
          joined, with the space still a space. The whitespace pre-tokeniser removes that space
          and ends a pre-token there; the others only split further (Punctuation, Digits match
          no space). So the pre-tokens of the whole are those of the pieces, and the model runs
          on each pre-token alone. No added token holds whitespace.
        - CUT_SPACE, Metaspace with split=True (SentencePiece converted, e.g. by `transformers`):
          normalisers as above, or a Replace of " " by "▁"; pre-tokeniser Metaspace("▁") alone,
          any prepend_scheme, any model. Metaspace writes each space as "▁" and starts a
          pre-token at every "▁"; the right piece starts with the space at the cut, so it starts
          with "▁" and gets no prefix ("always" and "first" prepend only to text that does not
          start with one), and its pre-tokens are the whole's from the cut on. No added token
          holds whitespace or "▁".
        - CUT_WORD (before a space that follows a letter or digit), the model on the whole
          string: Metaspace("▁") with split=False and no normaliser, or no pre-tokeniser and a
          Replace of " " by "▁" (Llama-2 style), optionally with a Prepend("▁") beside it. The
          normalised pieces, joined, are the whole's normalised text, and the join is a letter
          or digit followed by "▁" (after a real "▁" the join would be "▁▁", which a piece may
          span). The model must then never reach across such a place: BPE (no dropout, no
          ignore_merges: a piece that is a whole vocabulary entry would skip the merges; no
          subword prefix or word suffix: they mark word ends) or Unigram, with "▁" in the
          vocabulary (never part of a fused <unk> run) and no vocabulary entry holding a
          non-"▁" followed by "▁" (so no merge and no lattice edge crosses the join). A Prepend
          adds "▁" to every text it sees: each piece after the first is encoded by
          `_continuation`, the same tokenizer without it (the first is encoded as is, as the
          whole's start); it requires no ordinary added tokens at all (each text between them
          gets its own "▁").
        - CUT_WORD, SentencePiece converted by `transformers` (T5, mT5, ALBERT): a Precompiled
          normaliser whose rule table passes `charsmap_cuttable(..., whitespace=True)`, or none,
          then either (A, older files) Replace(" {2,}" by " ") with WhitespaceSplit then
          Metaspace("▁"), or (B) Strip(right only) then Replace(" {2,}" by "▁") with
          Metaspace("▁", split=True) alone; any prepend_scheme, any model. Precompiled rewrites
          one extended grapheme cluster at a time: a cluster under 6 bytes as a whole, by the
          rule of the shortest source it starts with, else character by character. Clusters
          never look back past a space, so where a cut starts a cluster the normalised whole is
          the normalised pieces joined. A space starts a cluster except after a Prepend
          character ("\\u0d4e b" is "\\u0d4e " then "b"; a rule for U+0D4E would rewrite the
          space with it), and base.CUT_WORD never cuts there. Nor does it cut after a letter
          that extends a cluster or two after a Prepend character, so the letter or digit
          before the cut is a cluster of its own (Hangul and Indic conjunct clusters are 6 bytes
          or more: rewritten character by character); otherwise nmt_nfkc writes "\\xa0\\u0e33"
          as " ", and after "\\x85" (whitespace it leaves) the whole keeps "\\x85" where (B)'s
          left piece strips it. That last letter or digit is kept or written by a rule as
          something non-empty that ends in no whitespace and no "▁"; no rule source holds a
          space, so the space at the cut is kept: the left piece normalises to text ending in a
          non-space, the right to text starting with " ". Replace(" {2,}") rewrites the same
          runs (a run at the cut lies in the right piece). (A) WhitespaceSplit ends a
          pre-token at that space and removes it; Metaspace then acts on each pre-token alone
          ("first" prepends only at original offset 0, and the right piece's first pre-token
          starts after its space). (B) Strip has nothing to remove at the left piece's end and
          the whole strips what the right piece strips (a right piece of whitespace only strips
          to "", to which Metaspace prepends nothing); the right piece starts with " " or "▁",
          so Metaspace prepends nothing and starts a pre-token there, as in the whole. So the
          pre-tokens of the whole are the pieces', and the model runs on each alone. (Added
          tokens split the text first; each stretch is normalised alone, the one with the cut
          as above.) Without Precompiled the same holds, each character kept.
        Anything else (Strip, Replace of other text, Precompiled elsewhere or with a table that
        fails the check, Nmt, ByteLevel with a normaliser, Split by another pattern,
        UnicodeScripts, CharDelimiterSplit, ...) keeps the tokenizer whole."""
        cfg = self._config
        added = list(self._added_plain.values())
        if cfg.get("truncation") or cfg.get("padding") or any(t.get("lstrip") or t.get("rstrip") for t in added):
            return None
        norms = _parts(cfg.get("normalizer"), "normalizers")
        pres = _parts(cfg.get("pre_tokenizer"), "pretokenizers")
        if norms is None or pres is None:
            return None
        norm_types = [n.get("type") for n in norms]
        pre_types = [p.get("type") for p in pres]
        contents = [str(t.get("content", "")) for t in added]
        if not norms and self._byte_level_pattern(pres) and not any("\n" in c for c in contents):
            return CUT_NEWLINE
        if any(ch.isspace() or ch == META for c in contents for ch in c):
            return None
        charwise = set(norm_types) <= CHARWISE_NORMALIZERS
        if charwise and pre_types and set(pre_types) <= SPLIT_PRE_TOKENIZERS and set(pre_types) & WHITESPACE_PRE_TOKENIZERS:
            return CUT_SPACE
        if self._sentencepiece_converted(norms, pres):
            return CUT_WORD
        if pre_types == ["Metaspace"] and pres[0].get("replacement") == META:
            if pres[0].get("split", True):
                if all(n.get("type") in CHARWISE_NORMALIZERS or _is_replace_space(n) for n in norms):
                    return CUT_SPACE
                return None
            return CUT_WORD if not norms and self._model_stays_in_words() else None
        replaces = [n for n in norms if _is_replace_space(n)]
        prepends = [n for n in norms if n.get("type") == "Prepend" and n.get("prepend") == META]
        if pre_types or len(replaces) != 1 or len(prepends) > 1 or len(norms) != 1 + len(prepends) or not self._model_stays_in_words():
            return None
        if prepends:
            if added:
                return None
            from tokenizers import Tokenizer

            plain = dict(cfg)
            plain["added_tokens"] = []
            plain["normalizer"] = replaces[0]
            self._continuation = Tokenizer.from_str(json.dumps(plain))
        return CUT_WORD

    @staticmethod
    def _sentencepiece_converted(norms: list[dict[str, Any]], pres: list[dict[str, Any]]) -> bool:
        """A T5/mT5/ALBERT-style pipeline with a rule table that passes the check, or none (see
        `_cut_rule`, CUT_WORD for SentencePiece converted)."""
        table = norms[0] if norms and norms[0].get("type") == "Precompiled" else None
        rest = norms[1:] if table is not None else norms
        pre_types = [p.get("type") for p in pres]
        metaspace = pres[-1] if pres else {}
        if metaspace.get("type") != "Metaspace" or metaspace.get("replacement") != META or metaspace.get("prepend_scheme") not in ("always", "first", "never"):
            return False
        strip = {"type": "Strip", "strip_left": False, "strip_right": True}
        if pre_types == ["WhitespaceSplit", "Metaspace"]:  # (A) older files
            shaped = len(rest) == 1 and _is_replace_runs(rest[0], " ")
        else:  # (B)
            shaped = pre_types == ["Metaspace"] and bool(metaspace.get("split", True)) and len(rest) == 2 and rest[0] == strip and _is_replace_runs(rest[1], META)
        if not shaped or table is None:
            return shaped
        from toklab.segmenters.sentencepiece import _charsmap_cuttable  # cached: nmt_nfkc's takes ~0.3 s

        try:
            charsmap = base64.b64decode(table.get("precompiled_charsmap") or "", validate=True)
        except ValueError:
            return False
        return _charsmap_cuttable(charsmap, whitespace=True)

    @staticmethod
    def _byte_level_pattern(parts: list[dict[str, Any]]) -> bool:
        """ByteLevel with GPT-2's regex, or a Split by a pattern of `_cuttable_patterns` then ByteLevel
        without one; no prefix space."""
        if any(part.get("add_prefix_space") for part in parts):
            return False
        if [part.get("type") for part in parts] == ["ByteLevel"]:
            return bool(parts[0].get("use_regex", True))
        if [part.get("type") for part in parts] == ["Split", "ByteLevel"]:
            split, level = parts
            pattern = (split.get("pattern") or {}).get("Regex")
            return pattern in _cuttable_patterns() and split.get("behavior") == "Isolated" and not split.get("invert") and not level.get("use_regex", True)
        return False

    def _model_stays_in_words(self) -> bool:
        """A model run on a whole string never joins a non-"▁" character to a following "▁" (see
        `_cut_rule`, CUT_WORD)."""
        model = self._config.get("model") or {}
        kind = model.get("type")
        if kind == "BPE":
            if model.get("dropout") or model.get("ignore_merges") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
                return False
            vocab = model.get("vocab")
            tokens = list(vocab) if isinstance(vocab, dict) else None
        elif kind == "Unigram":
            vocab = model.get("vocab")
            tokens = [entry[0] for entry in vocab] if isinstance(vocab, list) else None
        else:
            return False
        if tokens is None or META not in tokens:
            return False
        crossing = re.compile(f"[^{META}]{META}")
        return not any(crossing.search(str(token)) for token in tokens)

    def _structurally_lossless(self) -> bool:
        cfg = self._config
        if cfg.get("normalizer") is not None:
            return False
        if any(part.get("add_prefix_space") for part in _walk(cfg.get("pre_tokenizer"), "ByteLevel")):
            return False
        if any(t.get("lstrip") or t.get("rstrip") for t in self._added_plain.values()):
            return False
        return True

    # --- saving and pickling ---------------------------------------------------------------------

    def _save_files(self, directory: Path) -> None:
        self.tokenizer.save(str(directory / HF_FILE))

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "HFTokenizerSegmenter":
        path = directory / HF_FILE
        with reading(path):
            segmenter = cls(_tokenizer_from_file(path), manifest.get("params"), manifest.get("corpus_fingerprint"))
        check_vocab_size(path, segmenter.vocab_size, manifest)
        return segmenter

    def __getstate__(self) -> dict[str, Any]:
        return {"params": self.params, "corpus_fingerprint": self.corpus_fingerprint, "json": self.tokenizer.to_str(), "lossless": self._lossless}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.params = state["params"]
        self.corpus_fingerprint = state["corpus_fingerprint"]
        self._lengths = None
        self._setup(Tokenizer.from_str(state["json"]))
        self._lossless = state.get("lossless")


def _tokenizer_from_file(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ToklabError(f"cannot read tokenizer {path}: {one_line(exc)}") from None


def _tokenizer_from_hub(hub_id: str, revision: str | None) -> Any:
    """A hub tokenizer: from the local Hugging Face cache when offline, else downloaded. Offline is
    detected up front (HF_HUB_OFFLINE, or the hub host not answering within 3 s): the library
    itself retries for ~25 s before giving up."""
    from tokenizers import Tokenizer

    reason = hub_offline_reason()
    if reason is not None:
        try:
            from huggingface_hub import hf_hub_download

            cached = hf_hub_download(hub_id, HF_FILE, revision=revision, local_files_only=True)
        except Exception:
            raise SegmenterUnavailable(
                f"cannot fetch hub tokenizer '{hub_id}': this machine is offline ({reason}) and it is not in the local "
                f"Hugging Face cache; pass the path of a local tokenizer.json (or a folder holding one) as hf:PATH"
            ) from None
        return _tokenizer_from_file(Path(cached))
    try:
        return Tokenizer.from_pretrained(hub_id, revision=revision or "main")
    except Exception as exc:
        raise ToklabError(f"cannot fetch hub tokenizer '{hub_id}': {one_line(exc)}") from None
