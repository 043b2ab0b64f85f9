"""Spec strings -> segmenters: parsing, the kind registry (built-in and entry points), training cache.

A spec is `kind[:arg][,key=value...]`: `bytes`, `bpe:32k`, `bpe:32k,regex=gpt2`, `unigram:8k`,
`tiktoken:cl100k_base`, `hf:path/tokenizer.json`, `spm:m.model`, or the path of a saved segmenter.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toklab.errors import ToklabError
from toklab.files import cache_dir
from toklab.segmenters.base import MANIFEST, Segmenter, load_segmenter

if TYPE_CHECKING:
    from toklab.corpus import Corpus

ENTRY_POINT_GROUP = "toklab.segmenters"
BUILTIN: dict[str, str] = {
    "bytes": "toklab.segmenters.bytes:ByteSegmenter",
    "bpe": "toklab.segmenters.bpe:BPESegmenter",
    "unigram": "toklab.segmenters.sentencepiece:UnigramSegmenter",
    "spm-bpe": "toklab.segmenters.sentencepiece:SentencePieceBPESegmenter",
    "spm": "toklab.segmenters.sentencepiece:SentencePieceFileSegmenter",
    "tiktoken": "toklab.segmenters.pretrained:TiktokenSegmenter",
    "hf": "toklab.segmenters.pretrained:HFTokenizerSegmenter",
    "entropy": "toklab.segmenters.entropy:EntropySegmenter",
    "zstd-dict": "toklab.segmenters.zstd_dict:ZstdDictSegmenter",
}
SIZE = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Spec:
    kind: str
    arg: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        items = ([self.arg] if self.arg is not None else []) + [f"{k}={v}" for k, v in sorted(self.options.items())]
        return f"{self.kind}:{','.join(items)}" if items else self.kind


def parse_spec(text: str) -> Spec:
    """Split `kind[:arg][,key=value...]`; one item without '=' is the argument."""
    text = text.strip()
    if not text:
        raise ToklabError("empty segmenter spec")
    kind, _, rest = text.partition(":")
    arg, options = None, {}
    for item in [i for i in rest.split(",") if i] if rest else []:
        key, eq, value = item.partition("=")
        if eq:
            options[key.strip()] = value.strip()
        elif arg is None:
            arg = item.strip()
        else:
            raise ToklabError(f"segmenter spec '{text}' has two arguments ('{arg}' and '{item}'); options are key=value")
    return Spec(kind.strip().lower(), arg, options)


def split_specs(texts: str | list[str]) -> list[str]:
    """'bytes,bpe:32k,regex=o200k,unigram:8k' -> ['bytes', 'bpe:32k,regex=o200k', 'unigram:8k'].

    A `key=value` item (no ':' before its '=') belongs to the spec before it.
    """
    specs: list[str] = []
    for text in [texts] if isinstance(texts, str) else texts:
        for item in (i.strip() for i in text.split(",")):
            if not item:
                continue
            key, eq, _ = item.partition("=")
            if eq and ":" not in key and specs:
                specs[-1] += "," + item
            else:
                specs.append(item)
    return specs


def parse_vocab_size(text: str | None, spec: str) -> int:
    """'32k' -> 32000, '50257' -> 50257, '1m' -> 1000000."""
    match = SIZE.match(text or "")
    if not match:
        raise ToklabError(f"'{spec}' needs a vocabulary size such as 8k, 32k or 50257")
    value = float(match.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]
    if value != int(value) or value < 1:
        raise ToklabError(f"bad vocabulary size '{text}' in '{spec}'")
    return int(value)


def training_vocab_size(cls: type[Segmenter], parsed: Spec, spec: str) -> int:
    """The vocabulary size a trainable spec asks for, or its kind's default when it names none."""
    if parsed.arg is None and cls.default_vocab_size is not None:
        return cls.default_vocab_size
    return parse_vocab_size(parsed.arg, spec)


def available_kinds() -> dict[str, str]:
    """Kind name -> 'module:Class', built-in kinds first, then the `toklab.segmenters` entry points."""
    kinds = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kinds.setdefault(ep.name, ep.value)
    return kinds


def segmenter_class(kind: str) -> type[Segmenter]:
    kinds = available_kinds()
    if kind not in kinds:
        raise ToklabError(f"unknown segmenter kind '{kind}' (known: {', '.join(kinds)}; or the path of a saved segmenter)")
    module_name, _, attr = kinds[kind].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ToklabError(f"segmenter kind '{kind}' cannot be loaded from {kinds[kind]}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Segmenter)):
        raise ToklabError(f"segmenter kind '{kind}' ({kinds[kind]}) is not a toklab Segmenter subclass")
    return cls


def training_key(spec: Spec, corpus: "Corpus") -> str:
    """Cache key: kind, parameters, the training corpus fingerprint and the split."""
    payload = json.dumps([spec.kind, spec.arg, spec.options, corpus.fingerprint(), corpus.options.val_fraction], sort_keys=True)
    digest = hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{spec.kind}-{spec.arg or ''}")
    return f"{safe}-{digest}"


def needs_training_corpus(spec: str) -> bool:
    """Whether `spec` names a kind that trains (rather than a saved folder or a pretrained kind)."""
    return not (Path(spec).expanduser() / MANIFEST).is_file() and segmenter_class(parse_spec(spec).kind).trainable


def get_segmenter(spec: str, corpus: "Corpus | None" = None, *, cache: bool = True, progress: bool = False) -> Segmenter:
    """The segmenter a spec names: loaded, built from a file, or trained on `corpus`'s train split.

    Trained segmenters are cached under the user cache directory, keyed by kind, parameters and
    the training corpus fingerprint, so every command reuses them.
    """
    path = Path(spec).expanduser()
    if (path / MANIFEST).is_file():
        return load_segmenter(path)
    parsed = parse_spec(spec)
    cls = segmenter_class(parsed.kind)
    if not cls.trainable:
        segmenter = cls.from_spec(parsed.arg, **parsed.options)
        if parsed.arg is not None:
            segmenter.params.setdefault("arg", parsed.arg)
        segmenter._spec = str(parsed)
        return segmenter
    vocab_size = training_vocab_size(cls, parsed, spec)
    if corpus is None:
        from toklab.corpus import open_corpus

        corpus = open_corpus("default", progress=progress)
    target = cache_dir() / "segmenters" / training_key(parsed, corpus)
    if cache and (target / MANIFEST).is_file():
        return load_segmenter(target)
    segmenter = train_segmenter(cls, parsed, vocab_size, corpus, progress=progress)
    if cache:
        try:
            segmenter.save(target)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)  # a cache we cannot write is not an error
    return segmenter


def get_segmenters(specs: list[str], corpus: "Corpus | None" = None, *, progress: bool = False) -> tuple[list[Segmenter], list[str]]:
    """Several segmenters for one run. A malformed spec or unknown kind fails at once, before any
    work; a segmenter that cannot be had (offline, a missing file, too little training text) is
    skipped with a one-line note, so the rest of the run goes on."""
    for spec in specs:
        if not (Path(spec).expanduser() / MANIFEST).is_file():
            parsed = parse_spec(spec)
            cls = segmenter_class(parsed.kind)
            if cls.trainable:
                training_vocab_size(cls, parsed, spec)
    segmenters, notes = [], []
    for spec in specs:
        try:
            segmenters.append(get_segmenter(spec, corpus, progress=progress))
        except ToklabError as exc:
            notes.append(f"skipped {spec}: {exc}")
    return segmenters, notes


def train_segmenter(cls: type[Segmenter], spec: Spec, vocab_size: int, corpus: "Corpus", *, progress: bool = False) -> Segmenter:
    from toklab.progress import document_progress

    with document_progress(f"training {spec}", enabled=progress) as advance:

        def texts() -> Any:
            for doc in corpus.train():
                advance(doc.n_bytes)
                yield doc.text
            advance.flush()  # the trainer may work on for a while after the last document

        segmenter = cls.train(texts(), vocab_size, **spec.options)
    if corpus.stats.documents == 0:
        raise ToklabError(f"cannot train {spec}: the corpus has no documents")
    segmenter.params = {"arg": spec.arg, **spec.options, **{k: v for k, v in segmenter.params.items() if k != "arg"}}
    segmenter.corpus_fingerprint = corpus.fingerprint()
    segmenter._spec = str(spec)
    return segmenter
