"""Spec strings -> segmenters: parsing, the kind registry (built-in and entry points), training cache.

A spec is `kind[:arg][,key=value...]`: `bytes`, `bpe:32k`, `bpe:32k,regex=gpt2`, `unigram:8k`,
`tiktoken:cl100k_base`, `hf:path/tokenizer.json`, `spm:m.model`, or the path of a saved segmenter.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from toklab.errors import ToklabError, one_line
from toklab.files import cache_dir, cache_key
from toklab.segmenters.base import MANIFEST, Segmenter, SegmenterUnavailable, check_vocab_size, reading
from toklab.segmenters.child import run_in_child
from toklab.segmenters.kinds import BUILTIN, ENTRY_POINT_GROUP, EXAMPLES
from toklab.segmenters.options import MAX_VOCAB_SIZE, vocab_size_range

if TYPE_CHECKING:
    from toklab.corpus import Corpus

SAVED_FOLDER: dict[str, Any] = {
    "kind": "(saved folder)",
    "summary": "a segmenter saved by toklab (tokenizer train --out, or Segmenter.save), whatever its kind",
    "syntax": "path/to/folder",
    "example": "tok/",
    "trainable": False,
    "vocab_size": None,
    "options": [],
    "known_args": [],
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
    """Split `kind[:arg][,key=value...]`; one item without '=' is the argument. (`kind,key=value`,
    options without an argument, reads like `kind:key=value`.)"""
    text = text.strip()
    if not text:
        raise ToklabError("empty segmenter spec")
    colon, comma = text.find(":"), text.find(",")
    if comma >= 0 and (colon < 0 or comma < colon):
        kind, rest = text[:comma], text[comma + 1 :]
    else:
        kind, _, rest = text.partition(":")
    if not kind.strip():
        raise ToklabError(f"segmenter spec '{text}' names no kind (e.g. bytes, bpe:32k)")
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
    value = Decimal(match.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]
    if value != value.to_integral_value() or value < 1:
        raise ToklabError(f"bad vocabulary size '{text}' in '{spec}'")
    return int(value)


def training_vocab_size(cls: type[Segmenter], parsed: Spec, spec: str) -> int:
    """The vocabulary size a trainable spec asks for (within its kind's bounds), or its kind's
    default when it names none."""
    if parsed.arg is None and cls.default_vocab_size is not None:
        return cls.default_vocab_size
    size = parse_vocab_size(parsed.arg, spec)
    return vocab_size_range(parsed.kind, size, cls.min_vocab_size, cls.max_vocab_size, cls.min_vocab_reason)


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


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a saved segmenter, checked for shape; a one-line ToklabError naming the file."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToklabError(f"{directory} is not a saved segmenter (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise ToklabError(f"cannot read {path}: {one_line(exc)}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("kind"), str):
        raise ToklabError(f"cannot read {path}: it is damaged or not what toklab wrote (no segmenter kind)")
    expected = manifest.get("vocab_size")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 1):
        raise ToklabError(f"cannot read {path}: it is damaged (vocab_size {expected!r} is not a positive whole number)")
    params = manifest.get("params")
    if params is not None and not isinstance(params, dict):
        raise ToklabError(f"cannot read {path}: it is damaged (params is not an object)")
    return manifest


def load_segmenter(directory: str | os.PathLike) -> Segmenter:
    """Load a segmenter saved with `save`, whatever its kind. A damaged folder is a one-line
    ToklabError naming the file."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    return load_saved(segmenter_class(manifest["kind"]), directory, manifest)


def load_saved(cls: type[Segmenter], directory: Path, manifest: dict[str, Any]) -> Segmenter:
    """A saved segmenter of class `cls`, from its folder and manifest (see `read_manifest`)."""
    with reading(directory):
        segmenter = cls._load(directory, manifest)
        size = segmenter.vocab_size
    check_vocab_size(directory, size, manifest)
    params = manifest.get("params")
    segmenter.params = params if params is not None else segmenter.params
    segmenter.corpus_fingerprint = manifest.get("corpus_fingerprint")
    spec = manifest.get("spec")
    segmenter._spec = spec if isinstance(spec, str) else None
    return segmenter


def training_key(spec: Spec, corpus: "Corpus") -> str:
    """Cache key: kind, parameters, the training corpus fingerprint and the split (and the kind's
    `training_revision` for the spec, when it has one)."""
    items: list[Any] = [spec.kind, spec.arg, spec.options, corpus.fingerprint(), corpus.options.val_fraction]
    revision = segmenter_class(spec.kind).training_revision(spec.options)
    if revision:
        items.append({"revision": revision})
    payload = json.dumps(items, sort_keys=True)
    return cache_key(f"{spec.kind}-{spec.arg or ''}", payload)


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that has passed every check that needs no work: a saved folder, or a kind with
    its parsed spec (and, for a trainable kind, its vocabulary size)."""

    text: str
    folder: Path | None = None
    parsed: Spec | None = None
    cls: type[Segmenter] | None = None
    vocab_size: int | None = None

    @property
    def trainable(self) -> bool:
        return self.cls is not None and self.cls.trainable

    @property
    def identity(self) -> Any:
        """Two specs with the same identity name the same segmenter (`bpe:2k` and `bpe:2000`)."""
        if self.folder is not None:
            return ("folder", str(self.folder.resolve()))
        assert self.parsed is not None
        arg = self.vocab_size if self.trainable else self.parsed.arg
        return (self.parsed.kind, arg, tuple(sorted(self.parsed.options.items())))


def check_spec(spec: str) -> CheckedSpec:
    """Parse and validate a spec without doing any work: the kind is known, the vocabulary size and
    every option are within their bounds, a named file exists. A mistake is a one-line ToklabError."""
    if not isinstance(spec, str):
        raise ToklabError(f"a segmenter spec is a string such as 'bpe:32k', not {spec!r}")
    folder = saved_folder(spec)
    if folder is not None:
        return CheckedSpec(spec, folder=folder)
    parsed = parse_spec(spec)
    cls = segmenter_class(parsed.kind)
    vocab_size = training_vocab_size(cls, parsed, spec) if cls.trainable else None
    try:
        cls.check_spec(parsed.arg, dict(parsed.options))
    except OSError as exc:  # a path the system refuses outright (too long, no permission, ...)
        shown = spec if len(spec) <= 80 else spec[:77] + "..."
        raise ToklabError(f"cannot use segmenter spec '{shown}': {exc.strerror or exc}") from None
    return CheckedSpec(spec, parsed=parsed, cls=cls, vocab_size=vocab_size)


def saved_folder(spec: str) -> Path | None:
    """The folder a spec names when it is a segmenter saved by toklab, else None."""
    if not spec.strip():
        return None
    path = Path(spec.strip()).expanduser()
    try:
        return path if (path / MANIFEST).is_file() else None
    except OSError:  # e.g. a name too long to be a path: not a folder
        return None


def check_specs(specs: "Sequence[str] | str") -> list[CheckedSpec]:
    """`check_spec` for each of several specs, and none of them twice: the checks a run of several
    segmenters makes before any work."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise ToklabError("no segmenter specs given (e.g. -s bytes,bpe:32k)")
    checked = [check_spec(spec) for spec in specs]
    seen: dict[Any, str] = {}
    for item in checked:
        if item.identity in seen:
            first = seen[item.identity]
            if first == item.text:
                raise ToklabError(f"segmenter '{item.text}' is given twice; name each segmenter once")
            raise ToklabError(f"'{first}' and '{item.text}' name the same segmenter twice; name each segmenter once")
        seen[item.identity] = item.text
    return checked


def needs_training_corpus(spec: str) -> bool:
    """Whether `spec` names a kind that trains (rather than a saved folder or a pretrained kind).
    A malformed spec is an error here already, before any corpus is opened."""
    return check_spec(spec).trainable


def get_segmenter(spec: str, corpus: "Corpus | None" = None, *, cache: bool = True, progress: bool = False) -> Segmenter:
    """The segmenter a spec names: loaded, built from a file, or trained on `corpus`'s train split.

    The spec is checked in full first (see `check_spec`), so a mistake is an error before any
    training. Trained segmenters are cached under the user cache directory, keyed by kind,
    parameters and the training corpus fingerprint, so every command reuses them.
    """
    return _build(check_spec(spec), corpus, cache=cache, progress=progress)


def _build(checked: CheckedSpec, corpus: "Corpus | None", *, cache: bool = True, progress: bool = False) -> Segmenter:
    if checked.folder is not None:
        return load_segmenter(checked.folder)
    parsed, cls = checked.parsed, checked.cls
    assert parsed is not None and cls is not None
    if not cls.trainable:
        segmenter = cls.from_spec(parsed.arg, **parsed.options)
        if parsed.arg is not None:
            segmenter.params.setdefault("arg", parsed.arg)
        segmenter._spec = str(parsed)
        return segmenter
    assert checked.vocab_size is not None
    if corpus is None:
        from toklab.corpus import open_corpus

        corpus = open_corpus("default", progress=progress)
    target = cache_dir() / "segmenters" / training_key(parsed, corpus)
    if cache and (target / MANIFEST).is_file():
        try:
            return load_segmenter(target)
        except ToklabError:
            shutil.rmtree(target, ignore_errors=True)  # a damaged cache entry is trained afresh
    segmenter = train_segmenter(cls, parsed, checked.vocab_size, corpus, progress=progress)
    if cache:
        try:
            segmenter.save(target)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)  # a cache we cannot write is not an error
        except ToklabError:
            pass  # something else lies at the cache entry's place: leave it, and the run goes on
    return segmenter


def get_segmenters(specs: "list[str] | str", corpus: "Corpus | None" = None, *, progress: bool = False) -> tuple[list[Segmenter], list[str]]:
    """Several segmenters for one run, in the order given, and notes on the ones skipped.

    Every spec is checked first, then every saved folder, file and pretrained vocabulary is
    loaded, and only then is anything trained: a mistake (a malformed or repeated spec, an
    option out of range, a missing or damaged file) is an error before any work. Only a
    pretrained vocabulary that cannot be had here (offline and not cached) is skipped, with a
    one-line note; when every segmenter is skipped, that is an error too.
    """
    checked = check_specs(specs)
    built: dict[int, Segmenter] = {}
    notes: list[str] = []
    for i, item in enumerate(checked):  # saved, file and pretrained segmenters: cheap, and may be damaged
        if not item.trainable:
            try:
                built[i] = _build(item, corpus, progress=progress)
            except SegmenterUnavailable as exc:
                notes.append(f"skipped {item.text}: {exc}")
    for i, item in enumerate(checked):
        if item.trainable:
            built[i] = _build(item, corpus, progress=progress)
    if not built:
        raise ToklabError("no segmenter could be had: " + "; ".join(notes))
    return [built[i] for i in sorted(built)], notes


@dataclass(frozen=True)
class Trainer:
    """`cls.train(texts, vocab_size, **options)` as a picklable callable, for `run_in_child`."""

    cls: type[Segmenter]
    vocab_size: int
    options: dict[str, str]

    def __call__(self, texts: Iterator[str]) -> Segmenter:
        return self.cls.train(texts, self.vocab_size, **self.options)


def train_segmenter(cls: type[Segmenter], spec: Spec, vocab_size: int, corpus: "Corpus", *, progress: bool = False) -> Segmenter:
    from toklab.progress import document_progress

    with document_progress(f"training {spec}", enabled=progress) as advance:

        def texts() -> Any:
            for doc in corpus.train():
                advance(doc.n_bytes)
                yield doc.text
            advance.flush()  # the trainer may work on for a while after the last document

        train = Trainer(cls, vocab_size, dict(spec.options))
        if cls.train_in_child:

            def waiting() -> None:  # plain progress lines go on while the child trains
                if advance.lines is not None and advance.lines.due():
                    advance.flush()

            segmenter = run_in_child(train, texts(), waiting=waiting)
        else:
            segmenter = train(texts())
    if corpus.stats.documents == 0:
        raise ToklabError(f"cannot train {spec}: the corpus has no documents")
    segmenter.params = {"arg": spec.arg, **spec.options, **{k: v for k, v in segmenter.params.items() if k != "arg"}}
    segmenter.corpus_fingerprint = corpus.fingerprint()
    segmenter._spec = str(spec)
    return segmenter


def describe_kind(kind: str, cls: Any) -> dict[str, Any]:
    """Plain data about one registered kind: summary, spec syntax, vocabulary bounds, options, and
    the named arguments it knows (e.g. tiktoken encodings, with whether each is available offline)."""
    doc = (cls.__doc__ or "").strip().splitlines()
    try:
        known = cls.known_args()
    except Exception as exc:  # a library that cannot answer here: the rest of the description stands
        known = [{"name": "?", "available": None, "why": f"cannot list: {exc}"}]
    vocab = None
    if cls.trainable:
        vocab = {"min": cls.min_vocab_size, "max": cls.max_vocab_size, "default": cls.default_vocab_size, "min_holds": cls.min_vocab_reason or None}
    return {
        "kind": kind,
        "summary": cls.summary or (doc[0] if doc else ""),
        "syntax": cls.spec_syntax(),
        "example": EXAMPLES.get(kind, cls.spec_syntax()),
        "trainable": bool(cls.trainable),
        "vocab_size": vocab,
        "options": [option.to_dict() for option in cls.option_info],
        "known_args": known,
    }


def describe() -> dict[str, Any]:
    """Every segmenter kind the registry knows (built-in ones, then `toklab.segmenters` entry
    points) and the saved-folder form, as plain data (JSON-ready). A kind that cannot be loaded is
    listed with its error rather than failing the whole description."""
    kinds: list[dict[str, Any]] = []
    for kind, where in available_kinds().items():
        try:
            cls = segmenter_class(kind)
        except ToklabError as exc:
            kinds.append({"kind": kind, "summary": "", "syntax": kind, "example": kind, "trainable": False, "vocab_size": None, "options": [], "known_args": [], "error": str(exc)})
            continue
        entry = describe_kind(kind, cls)
        entry["source"] = where
        kinds.append(entry)
    kinds.append(dict(SAVED_FOLDER))
    return {"kinds": kinds, "max_vocab_size": MAX_VOCAB_SIZE}
