"""`open_corpus(spec)`: one way to open any corpus from a single `--corpus` string."""

from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterator

from toklab.corpus import recipes
from toklab.corpus.document import Document, Part, in_sample, split_of
from toklab.corpus.readers import (
    RECORD_READERS,
    SHARD_SUFFIXES,
    CorpusOptions,
    ReadStats,
    _Context,
    documents_of,
    is_saved_dataset,
    not_a_regular_file,
    shard_kind,
)
from toklab.errors import ToklabError
from toklab.files import slug
from toklab.text import count

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Input:
    """One readable unit of a corpus: a shard file, a saved dataset, or a streamed dataset."""

    kind: str  # "parquet" | "jsonl" | "text" | "saved" | "stream"
    target: str  # a path, or a hub id for "stream"
    location: str  # prefix of generated document ids, relative to the corpus root
    default_source: str  # the source of documents that carry no source field

    def context(self, options: CorpusOptions, stats: ReadStats) -> _Context:
        return _Context(options=options, stats=stats, label=self.target, default_source=self.default_source)

    def records(self, ctx: _Context) -> Iterator[Any]:
        """The raw records, as (location, line, record); see readers.RECORD_READERS."""
        target: Any = self.target if self.kind == "stream" else Path(self.target)
        return RECORD_READERS[self.kind](target, ctx, self.location)

    def read(self, options: CorpusOptions, stats: ReadStats) -> Iterator[Document]:
        ctx = self.context(options, stats)
        return documents_of(self.records(ctx), ctx)

    def signature(self) -> list[Any]:
        """What identifies this input's content cheaply: path, size and modification time."""
        path = Path(self.target)
        if self.kind == "stream" or not path.exists():
            return [self.kind, self.target]
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return [self.kind, self.target] + [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


class Corpus:
    """A re-iterable stream of Documents with sampling, caps and a deterministic train/val split.

    Each pass re-reads the inputs; `stats` describes the most recent pass.
    """

    def __init__(self, spec: str, inputs: list[Input], options: CorpusOptions, description: str = "") -> None:
        self.spec = spec
        self.inputs = inputs
        self.options = options
        self.description = description
        self.stats = ReadStats()

    def __repr__(self) -> str:
        return f"Corpus({self.spec!r}, {len(self.inputs)} inputs)"

    def input_roots(self) -> list[Path]:
        """The folders and files this corpus reads (a glob's fixed folder too): no output may lie
        inside them or contain them (see toklab.files.check_outside)."""
        roots = [Path(item.target) for item in self.inputs if item.kind != "stream"]
        path = Path(self.spec).expanduser()
        if path.is_dir():
            roots.append(path)
        elif GLOB_CHARS & set(self.spec):
            roots.append(_glob_root(str(path)))
        return list(dict.fromkeys(roots))

    def __iter__(self) -> Iterator[Document]:
        return self.documents()

    def documents(self, part: Part | None = None) -> Iterator[Document]:
        """Documents after sampling and the --max-docs/--max-bytes caps; `part` keeps one split.

        Caps apply to the whole stream before the split, so train and val of a capped corpus
        always partition the same documents.
        """
        if part not in (None, "train", "val"):
            raise ToklabError(f"unknown split part '{part}' (use train or val)")
        opts = self.options
        stats = self.stats = ReadStats()
        for item in self.inputs:
            stats.files += 1
            for doc in item.read(opts, stats):
                if not in_sample(doc.id, opts.sample, opts.seed):
                    continue
                if opts.max_docs is not None and stats.documents >= opts.max_docs:
                    return
                n_bytes = doc.n_bytes
                if opts.max_bytes is not None and stats.bytes + n_bytes > opts.max_bytes:
                    return
                stats.documents += 1
                stats.bytes += n_bytes
                if part is None or split_of(doc.id, opts.val_fraction) == part:
                    yield doc

    def train(self) -> Iterator[Document]:
        return self.documents("train")

    def val(self) -> Iterator[Document]:
        return self.documents("val")

    @property
    def label(self) -> str:
        """A short, file-name-safe name: the corpus's own name, then each reading option that
        changes which documents it holds or how they split (e.g. `sotu-1000docs-val0.2`)."""
        o, default = self.options, CorpusOptions()
        parts = [Path(self.spec.rstrip("/*")).stem or "corpus"]
        parts += [v for v in (o.name, o.split) if v]
        if o.text_field != default.text_field:
            parts.append(f"field-{o.text_field}")
        if o.lines:
            parts.append("lines")
        if o.max_docs is not None:
            parts.append(f"{o.max_docs}docs")
        if o.max_bytes is not None:
            parts.append(f"{o.max_bytes}bytes")
        if o.sample != default.sample:
            parts.append(f"sample{o.sample:g}-seed{o.seed}")
        if o.val_fraction != default.val_fraction:
            parts.append(f"val{o.val_fraction:g}")
        return slug("-".join(parts))

    def fingerprint(self) -> str:
        """A short hash of what this corpus reads and how; it changes when an input file changes."""
        reading = {k: v for k, v in asdict(self.options).items() if k not in {"val_fraction", "strict"}}
        payload = json.dumps([reading] + [item.signature() for item in self.inputs], default=str)
        return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def open_corpus(spec: str = "default", options: CorpusOptions | None = None, *, progress: bool = False, **overrides: Any) -> Corpus:
    """Open a corpus from one string.

    `spec` is a shard file (.parquet, .jsonl, .jsonl.gz, .jsonl.zst, .txt), a directory of
    shards, a glob, a folder written by `datasets`' save_to_disk, a hub id (`org/name`, or
    `hf:ID-or-folder` to go through `datasets.load_dataset(streaming=True)`), or a recipe
    (a name in corpora/ such as `default`, or a .toml file). Keyword overrides set fields of
    `CorpusOptions`, e.g. `open_corpus("data/", max_docs=100, val_fraction=0.05)`.
    """
    options = options or CorpusOptions()
    valid = {f.name for f in fields(CorpusOptions)}
    unknown = set(overrides) - valid
    if unknown:
        raise TypeError(f"unknown corpus options: {', '.join(sorted(unknown))}")
    options = replace(options, **overrides) if overrides else options
    inputs, description = resolve(spec, progress=progress)
    return Corpus(spec, inputs, options, description)


def resolve(spec: str, *, base: Path | None = None, progress: bool = False) -> tuple[list[Input], str]:
    """Turn a corpus spec into the inputs it reads, and a one-line description."""
    spec = spec.strip()
    if not spec:
        raise ToklabError("--corpus must not be empty")
    if spec.startswith("hf:"):
        target = spec[3:]
        return [Input("stream", target, target, target.rstrip("/").split("/")[-1])], f"datasets stream {target}"
    path = Path(spec).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_file() and path.suffix == ".toml":
        return resolve_recipe(path, progress=progress)
    if path.is_file():
        kind = shard_kind(path)
        if kind is None:
            raise ToklabError(f"{path}: unsupported format (use .parquet, .jsonl, .jsonl.gz, .jsonl.zst or .txt)")
        return [Input(kind, str(path), path.name, _stem(path))], f"{kind} file {path}"
    if path.is_dir():
        if is_saved_dataset(path):
            return [Input("saved", str(path), path.name, path.name)], f"saved dataset {path}"
        return _shards_under(path), f"shards under {path}"
    why = not_a_regular_file(path)
    if why is not None:
        raise ToklabError(why)
    if GLOB_CHARS & set(spec):
        pattern = str(path)
        matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
        shards = [p for p in matches if shard_kind(p) is not None]
        if not shards:
            raise ToklabError(f"no shards match {spec} (looked for .parquet, .jsonl, .jsonl.gz, .jsonl.zst, .txt)")
        return [_file_input(p, _glob_root(pattern)) for p in shards], f"{count(len(shards), 'shard')} matching {spec}"
    recipe = recipes.find_recipe(spec)
    if recipe is not None:
        return resolve_recipe(recipe, progress=progress)
    if shard_kind(path) is not None or path.suffix == ".toml":
        raise ToklabError(f"no such file or directory: {spec}")
    if HUB_ID.match(spec):
        return [Input("stream", spec, spec, spec.split("/")[-1])], f"hub dataset {spec}"
    if "/" in spec:
        raise ToklabError(f"no such file or directory: {spec}")
    known = ", ".join(recipes.recipe_names()) or "none"
    raise ToklabError(f"no such file, directory or recipe: {spec} (recipes: {known})")


def resolve_recipe(path: Path, *, progress: bool = False) -> tuple[list[Input], str]:
    """The inputs of a recipe: its built shards (building them if needed) and its in-place corpora.
    Lives beside `resolve`, which it recurses into, so recipes.py need not import this module."""
    recipe = recipes.load_recipe(path)
    inputs: list[Input] = []
    if recipe.built_parts:
        built = recipes.build_recipe(recipe, progress=progress)
        shards = sorted(built.path.glob("part-*.parquet"))
        inputs += [Input("parquet", str(p), f"{recipe.name}/{p.name}", recipe.name) for p in shards]
    for part in recipe.parts:
        if "corpus" in part:
            inputs += resolve(part["corpus"], base=path.parent, progress=progress)[0]
    return inputs, recipe.description or f"recipe {recipe.name}"


def _stem(path: Path) -> str:
    """The file name without its format suffix (".jsonl.zst" counts as one)."""
    name = path.name
    suffix = next((s for s, _ in SHARD_SUFFIXES if name.lower().endswith(s)), path.suffix)
    return name[: len(name) - len(suffix)] if suffix else name


shard_stem = _stem  # the public name, for code outside the corpus layer (filter names its output shards by it)


def _glob_root(pattern: str) -> Path:
    """The deepest directory of a glob pattern that has no wildcard in it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _file_input(path: Path, root: Path) -> Input:
    """A shard under `root`; its first sub-folder (if any) names the source of unlabelled text."""
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    default_source = rel.parts[0] if len(rel.parts) > 1 else (root.name or _stem(path))
    return Input(shard_kind(path) or "text", str(path), rel.as_posix(), default_source)


def _shards_under(root: Path) -> list[Input]:
    shards = sorted(p for p in root.rglob("*") if p.is_file() and shard_kind(p) is not None and not p.name.startswith("."))
    if not shards:
        raise ToklabError(f"no shards under {root} (looked for .parquet, .jsonl, .jsonl.gz, .jsonl.zst, .txt)")
    return [_file_input(p, root) for p in shards]
