"""The embedded default corpus: real text, no download, deterministic, cached outside git."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import toklab
from toklab.corpus import build_corpus, builders
from toklab.corpus.recipes import read_manifest

REPO = Path(__file__).resolve().parents[1]


def test_build_is_5_to_20_mb_of_every_kind_of_text(default_corpus_build):
    result = default_corpus_build
    assert 5_000_000 <= result.bytes <= 20_000_000
    kinds = {source.split("/")[0] for source in result.per_part}
    assert kinds == {"prose", "code", "markup", "multilingual"}
    info = toklab.corpus_info(toklab.open_corpus("default"))
    assert info.documents == result.documents and info.bytes == result.bytes
    sources = set(info.per_source["source"])
    assert {"prose/python-reference", "prose/docstrings", "code/python", "multilingual/Latn", "multilingual/Cyrl", "multilingual/Arab"} <= sources
    assert any(s.startswith("markup/") for s in sources)
    assert info.per_source["source"].str.startswith("multilingual/").sum() > 50  # one row per script


def test_build_lives_in_the_cache_not_in_the_repo(default_corpus_build, isolated_cache):
    assert default_corpus_build.path.is_relative_to(isolated_cache)
    assert sorted(p.name for p in (REPO / "corpora").iterdir()) == ["README.md", "default.toml"]
    shards = sorted(default_corpus_build.path.glob("part-*.parquet"))
    assert shards and all(pq.ParquetFile(s).metadata.row_group(0).column(0).compression == "ZSTD" for s in shards)
    assert not [p for p in default_corpus_build.path.iterdir() if p.name.startswith(".")]


def test_second_build_is_a_cache_hit(default_corpus_build):
    again = toklab.build_default_corpus()
    assert not again.rebuilt
    assert again.content_hash == default_corpus_build.content_hash


def test_rebuild_is_deterministic(default_corpus_build, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path))
    fresh = toklab.build_default_corpus()
    assert fresh.rebuilt
    assert fresh.path != default_corpus_build.path
    assert (fresh.documents, fresh.bytes, fresh.content_hash) == (default_corpus_build.documents, default_corpus_build.bytes, default_corpus_build.content_hash)


def test_first_use_builds_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path))
    corpus = toklab.open_corpus("default", max_docs=5)
    assert len(list(corpus)) == 5
    assert read_manifest(tmp_path / "corpora" / "default") is not None


def test_documents_hold_the_real_source_text(default_corpus_build):
    from pydoc_data.topics import topics

    docs = {d.id: d for d in toklab.open_corpus("default")}
    assert docs["pydoc:assert"].text == topics["assert"]
    assert docs["pydoc:assert"].source == "prose/python-reference"
    code = [d for d in docs.values() if d.source == "code/python"]
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sample = code[0]
    assert sample.text == (stdlib / sample.id.removeprefix("stdlib:")).read_text(encoding="utf-8", errors="replace")


def test_gflanguages_documents_keep_each_specimen_once():
    import gflanguages

    docs = {d.id: d for d in builders.gflanguages_samples("multilingual")}
    lang = gflanguages.LoadLanguages()["fr_Latn"]
    doc = docs["udhr:fr_Latn"]
    assert doc.source == "multilingual/Latn"
    assert lang.sample_text.specimen_16 in doc.text
    assert doc.text.count(lang.sample_text.specimen_48) == 1  # shorter specimens are not repeated


def test_docstrings_are_read_without_importing(tmp_path):
    docs = {d.id: d for d in builders.docstrings("prose/docstrings")}
    json_doc = docs["docstrings:json/__init__.py"]
    import json

    assert json.__doc__.strip().splitlines()[0] in json_doc.text
    assert json.dumps.__doc__.strip().splitlines()[0] in json_doc.text


def test_custom_recipe_mixes_built_and_in_place_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("hello world")
    recipe = tmp_path / "mix.toml"
    recipe.write_text('name = "mix"\n[[parts]]\nbuilder = "pydoc_topics"\nsource = "prose/ref"\nmax_bytes = 20000\n[[parts]]\ncorpus = "mine"\n')
    docs = list(toklab.open_corpus(str(recipe)))
    assert docs[-1].text == "hello world" and docs[-1].source == "mine"
    built = [d for d in docs if d.source == "prose/ref"]
    assert built and sum(d.n_bytes for d in built) <= 20000
    assert not build_corpus(str(recipe)).rebuilt
    recipe.write_text(recipe.read_text().replace("20000", "30000"))  # an edited recipe is rebuilt
    assert build_corpus(str(recipe)).rebuilt


def test_named_recipes_are_found_on_TOKLAB_CORPORA(tmp_path, monkeypatch):
    (tmp_path / "tiny.toml").write_text('[[parts]]\ncorpus = "t.txt"\n')
    (tmp_path / "t.txt").write_text("x y z")
    monkeypatch.setenv("TOKLAB_CORPORA", str(tmp_path))
    assert "tiny" in toklab.corpus.recipe_names()
    assert [d.text for d in toklab.open_corpus("tiny")] == ["x y z"]


@pytest.mark.parametrize(
    "body, message",
    [
        ("[[parts]]\n", "exactly one of 'builder' or 'corpus'"),
        ('[[parts]]\nbuilder = "nope"\nsource = "x"\n', "unknown builder 'nope'"),
        ('[[parts]]\nbuilder = "pydoc_topics"\n', "needs a 'source'"),
        ("name = \n", "cannot read recipe"),
        ('name = "empty"\n', "has no [[parts]]"),
    ],
)
def test_bad_recipes_are_clear_errors(tmp_path, body, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(body)
    with pytest.raises(toklab.ToklabError, match=message.replace("[", r"\[")):
        toklab.open_corpus(str(recipe))
