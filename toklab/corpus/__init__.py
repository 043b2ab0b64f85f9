"""Corpus layer: Document, opening any corpus from one spec string, the split, writers, recipes."""

from toklab.corpus.corpus import Corpus, Input, open_corpus
from toklab.corpus.document import Document, in_sample, split_of
from toklab.corpus.info import CorpusInfo, corpus_info
from toklab.corpus.readers import CorpusOptions, ReadStats
from toklab.corpus.recipes import BuildResult, build_recipe, find_recipe, load_recipe, recipe_names
from toklab.corpus.writers import JsonlZstShardWriter, ParquetShardWriter, ShardWriter, shard_writer


def build_default_corpus(*, force: bool = False, progress: bool = False) -> BuildResult:
    """Build (or find up to date in the cache) the embedded default corpus."""
    return build_corpus("default", force=force, progress=progress)


def build_corpus(name: str, *, force: bool = False, progress: bool = False) -> BuildResult:
    """Build a named recipe from corpora/ (or a path to a recipe .toml) into the cache."""
    from pathlib import Path

    from toklab.errors import ToklabError

    path = find_recipe(name) or (Path(name) if name.endswith(".toml") and Path(name).is_file() else None)
    if path is None:
        raise ToklabError(f"no recipe named '{name}' (recipes: {', '.join(recipe_names()) or 'none'})")
    return build_recipe(load_recipe(path), force=force, progress=progress)


__all__ = [
    "BuildResult",
    "Corpus",
    "CorpusInfo",
    "CorpusOptions",
    "Document",
    "Input",
    "JsonlZstShardWriter",
    "ParquetShardWriter",
    "ReadStats",
    "ShardWriter",
    "build_corpus",
    "build_default_corpus",
    "corpus_info",
    "in_sample",
    "open_corpus",
    "recipe_names",
    "shard_writer",
    "split_of",
]
