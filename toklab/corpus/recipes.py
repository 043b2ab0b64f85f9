"""Corpus recipes: TOML files in corpora/ that name the parts a corpus is made of.

A part is either built from what is installed (`builder = "..."`, cached as parquet shards
under the user cache directory) or read in place (`corpus = "path/or/glob"`, relative to the
recipe file). `toklab corpus build NAME` builds a recipe; it is also built on first use.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from toklab.corpus.builders import BUILDERS, builder_inputs
from toklab.errors import ToklabError
from toklab.files import atomic_dir, cache_dir

MANIFEST = "manifest.json"
BUILT_SHARD_BYTES = 4 * 2**20


def recipe_dirs() -> list[Path]:
    """Where named recipes are looked up: $TOKLAB_CORPORA, the installed package, the source checkout."""
    dirs = [Path(p) for p in os.environ.get("TOKLAB_CORPORA", "").split(os.pathsep) if p]
    package = Path(__file__).resolve().parent.parent
    dirs += [package / "_recipes", package.parent / "corpora"]
    return [d for d in dirs if d.is_dir()]


def recipe_names() -> list[str]:
    return sorted({p.stem for d in recipe_dirs() for p in d.glob("*.toml")})


def find_recipe(name: str) -> Path | None:
    if "/" in name or os.sep in name:
        return None
    for directory in recipe_dirs():
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Recipe:
    name: str
    path: Path
    description: str
    parts: list[dict[str, Any]]
    digest: str  # hash of the recipe text: a changed recipe is rebuilt

    @property
    def built_parts(self) -> list[dict[str, Any]]:
        return [p for p in self.parts if "builder" in p]

    def cache_path(self) -> Path:
        return cache_dir() / "corpora" / self.name


def load_recipe(path: Path) -> Recipe:
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ToklabError(f"cannot read recipe {path}: {exc}") from None
    parts = data.get("parts", [])
    if not parts:
        raise ToklabError(f"recipe {path} has no [[parts]]")
    for i, part in enumerate(parts):
        if ("builder" in part) == ("corpus" in part):
            raise ToklabError(f"recipe {path}: part {i + 1} needs exactly one of 'builder' or 'corpus'")
        if "builder" in part and part["builder"] not in BUILDERS:
            raise ToklabError(f"recipe {path}: unknown builder '{part['builder']}' (known: {', '.join(BUILDERS)})")
        if "builder" in part and "source" not in part:
            raise ToklabError(f"recipe {path}: part {i + 1} ({part['builder']}) needs a 'source'")
        if "builder" in part:  # a misspelt or missing option is named here, not a traceback at build time
            options = inspect.signature(BUILDERS[part["builder"]]).parameters
            unknown = sorted(set(_builder_params(part)) - set(options))
            if unknown:
                known = ", ".join(sorted({*options, "max_bytes"} - {"source"}))
                raise ToklabError(f"recipe {path}: part {i + 1} ({part['builder']}): unknown option '{unknown[0]}' (known: {known})")
            missing = [name for name, p in options.items() if p.default is p.empty and name not in part]
            if missing:
                raise ToklabError(f"recipe {path}: part {i + 1} ({part['builder']}) needs a '{missing[0]}'")
    digest = hashlib.blake2b(raw, digest_size=8).hexdigest()
    return Recipe(data.get("name", path.stem), path, data.get("description", ""), parts, digest)


def _builder_params(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k not in {"builder", "max_bytes"}}


def recipe_inputs(recipe: Recipe) -> list[dict[str, Any]]:
    """What each built part read besides the recipe: the Python version, the versions of the
    packages it read (None: listed but not installed). Part of the cache key, and of the manifest."""
    inputs = []
    for i, part in enumerate(recipe.parts):
        if "builder" not in part:
            continue
        try:
            read = builder_inputs(part["builder"], _builder_params(part))
        except ToklabError as exc:
            raise ToklabError(f"recipe {recipe.path}: part {i + 1} ({part['builder']}): {exc}") from None
        inputs.append({"builder": part["builder"], "source": part["source"], **read})
    return inputs


def _notes(inputs: list[dict[str, Any]]) -> list[str]:
    return [
        f"{item['source']}: package '{name}' is not installed, so the corpus leaves it out"
        for item in inputs
        for name, version in item.get("packages", {}).items()
        if version is None
    ]


@dataclass
class BuildResult:
    """What `build_recipe` produced: where, how much, and a hash of every document's id and text.

    `inputs` is what the built parts read (Python and package versions); `notes` names listed
    packages that are not installed."""

    name: str
    path: Path
    documents: int
    bytes: int
    content_hash: str
    per_part: dict[str, dict[str, int]] = field(default_factory=dict)
    rebuilt: bool = True
    inputs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def build_recipe(recipe: Recipe, *, force: bool = False, progress: bool = False) -> BuildResult:
    """Build the recipe's builder parts into parquet shards in the cache (skipped when up to date).

    Up to date means the same recipe text and the same inputs (`recipe_inputs`). A rebuild that
    gives the same documents keeps the old shard files (unless `force`), so the corpus's
    fingerprint, and every cache keyed on it, survives e.g. a package upgrade with the same README.
    """
    from toklab._version import __version__
    from toklab.corpus.writers import ParquetShardWriter
    from toklab.progress import document_progress

    target = recipe.cache_path()
    inputs = recipe_inputs(recipe)
    build_key = hashlib.blake2b(json.dumps([recipe.digest, inputs], sort_keys=True).encode(), digest_size=8).hexdigest()
    notes = _notes(inputs)
    old = read_manifest(target)
    if old and old.get("build_key") == build_key and not force:
        return BuildResult(recipe.name, target, old["documents"], old["bytes"], old["content_hash"], old["parts"], rebuilt=False, inputs=inputs, notes=notes)
    if progress:
        for note in notes:
            print(f"note: {note}", file=sys.stderr, flush=True)

    content = hashlib.blake2b(digest_size=16)
    per_part: dict[str, dict[str, int]] = {}
    with atomic_dir(target) as tmp:
        with document_progress(f"building corpus '{recipe.name}'", enabled=progress) as advance, ParquetShardWriter(tmp, prefix="part", max_shard_bytes=BUILT_SHARD_BYTES) as writer:
            for part in recipe.built_parts:
                params = _builder_params(part)
                cap = part.get("max_bytes")
                counts = per_part.setdefault(part["source"], {"documents": 0, "bytes": 0})
                for doc in BUILDERS[part["builder"]](**params):
                    n_bytes = doc.n_bytes
                    if cap is not None and counts["bytes"] + n_bytes > cap:
                        break
                    writer.write(doc)
                    content.update(f"{doc.id}\0{doc.source}\0{doc.text}\0".encode("utf-8", "replace"))
                    counts["documents"] += 1
                    counts["bytes"] += n_bytes
                    advance(n_bytes)
        documents = sum(c["documents"] for c in per_part.values())
        n_bytes = sum(c["bytes"] for c in per_part.values())
        if not force and old and old.get("content_hash") == content.hexdigest():
            _keep_old_shards(target, tmp)
        manifest = {
            "recipe": recipe.name,
            "recipe_digest": recipe.digest,
            "build_key": build_key,
            "documents": documents,
            "bytes": n_bytes,
            "content_hash": content.hexdigest(),
            "parts": per_part,
            "inputs": inputs,
            "notes": notes,
            "toklab_version": __version__,
            "python": platform.python_version(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return BuildResult(recipe.name, target, documents, n_bytes, manifest["content_hash"], per_part, inputs=inputs, notes=notes)


def _keep_old_shards(target: Path, tmp: Path) -> None:
    """Same documents as the old build: put the old shard files (copied with their modification
    times) in place of the new ones, since the corpus fingerprint hashes path, size and mtime."""
    old_shards = sorted(target.glob("part-*.parquet"))
    new_shards = sorted(tmp.glob("part-*.parquet"))
    if not old_shards or [p.name for p in old_shards] != [p.name for p in new_shards]:
        return  # the old folder is not a complete build: keep the fresh shards
    for old_shard in old_shards:
        shutil.copy2(old_shard, tmp / old_shard.name)
