"""The embedded default corpus: real text, no download, deterministic, cached outside git."""

from __future__ import annotations

import platform
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import toklab
from toklab.corpus import build_corpus, builders
from toklab.corpus.recipes import load_recipe, read_manifest, recipe_inputs

REPO = Path(__file__).resolve().parents[2]


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


def test_first_use_builds_it_and_a_rebuild_is_deterministic(default_corpus_build, tmp_path, monkeypatch):
    # one fresh build (about 12 s) checks both: opening the corpus in an empty cache builds it, and
    # that build has the documents of the session's build made in another cache
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path))
    assert read_manifest(tmp_path / "corpora" / "default") is None
    corpus = toklab.open_corpus("default", max_docs=5)
    assert len(list(corpus)) == 5
    assert read_manifest(tmp_path / "corpora" / "default") is not None
    fresh = toklab.build_default_corpus()
    assert not fresh.rebuilt  # open_corpus built it
    assert fresh.path != default_corpus_build.path
    assert (fresh.documents, fresh.bytes, fresh.content_hash) == (default_corpus_build.documents, default_corpus_build.bytes, default_corpus_build.content_hash)


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
        ('[[parts]]\nbuilder = "package_descriptions"\nsource = "m"\n', "needs a 'packages'"),
        ('[[parts]]\nbuilder = "package_descriptions"\nsource = "m"\npakages = ["rich"]\n', "unknown option 'pakages' .known: max_bytes, packages."),
        ('[[parts]]\nbuilder = "package_descriptions"\nsource = "m"\npackages = "all"\n', 'packages must be a list of distribution names, or "installed"'),
        ('[[parts]]\nbuilder = "package_descriptions"\nsource = "m"\npackages = ["rich", 3]\n', "packages must be a list"),
    ],
)
def test_bad_recipes_are_clear_errors(tmp_path, body, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(body)
    with pytest.raises(toklab.ToklabError, match=message.replace("[", r"\[")):
        toklab.open_corpus(str(recipe))


# --- the default corpus does not depend on what else is installed ------------------------------

LONG = "A package that a user installed after toklab; its README must not reach the default corpus. " * 5

# The markup part of corpora/default.toml, written out by hand: every listed package, sorted.
DEFAULT_PACKAGE_IDS = [
    "package:brotli", "package:certifi", "package:charset-normalizer", "package:contourpy", "package:cycler",
    "package:datasets", "package:dill", "package:filelock", "package:fonttools", "package:fsspec",
    "package:gflanguages", "package:huggingface-hub", "package:idna", "package:inflate64", "package:jinja2",
    "package:markdown-it-py", "package:markupsafe", "package:matplotlib", "package:mdurl", "package:mpmath",
    "package:multiprocess", "package:multivolumefile", "package:networkx", "package:numpy", "package:packaging",
    "package:pandas", "package:pillow", "package:psutil", "package:py7zr", "package:pyarrow",
    "package:pybcj", "package:pycryptodomex", "package:pygments", "package:pyparsing", "package:pyppmd",
    "package:python-dateutil", "package:pyyaml", "package:regex", "package:requests", "package:rich",
    "package:sentencepiece", "package:shellingham", "package:six", "package:sympy", "package:texttable",
    "package:tiktoken", "package:tokenizers", "package:torch", "package:tqdm", "package:typer",
    "package:typing-extensions", "package:urllib3", "package:xxhash", "package:zstandard",
]


def fake_install(site: Path, name: str, version: str = "1.0", description: str = LONG) -> Path:
    """What pip leaves behind, as far as importlib.metadata can tell: a dist-info folder."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nDescription-Content-Type: text/markdown\n\n{description}")
    return info


def default_markup_params() -> dict:
    recipe = load_recipe(REPO / "corpora" / "default.toml")
    (part,) = [p for p in recipe.parts if p.get("builder") == "package_descriptions"]
    return {k: v for k, v in part.items() if k not in {"builder", "max_bytes"}}


def markup_documents() -> list[tuple[str, str, str]]:
    return [(d.id, d.source, d.text) for d in builders.package_descriptions(**default_markup_params())]


def test_installing_another_distribution_does_not_change_the_default_markup(tmp_path, monkeypatch):
    import importlib.metadata as md

    before = markup_documents()
    fake_install(tmp_path / "site", "toklab-extra-package")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    # The simulated install is real to importlib.metadata, and a builder that read everything would see it.
    assert md.version("toklab-extra-package") == "1.0"
    assert "package:toklab-extra-package" in {d.id for d in builders.package_descriptions("markup", "installed")}
    assert markup_documents() == before
    assert "package:toklab-extra-package" not in {doc_id for doc_id, _, _ in before}


def test_the_default_recipe_reads_exactly_its_listed_packages():
    assert [doc_id for doc_id, _, _ in markup_documents()] == DEFAULT_PACKAGE_IDS


def test_the_default_corpus_cache_key_ignores_other_installs(tmp_path, monkeypatch):
    recipe = load_recipe(REPO / "corpora" / "default.toml")
    before = recipe_inputs(recipe)
    fake_install(tmp_path / "site", "toklab-extra-package")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert recipe_inputs(recipe) == before
    packages = {name for item in before for name in item.get("packages", {})}
    assert packages == {doc_id.removeprefix("package:") for doc_id in DEFAULT_PACKAGE_IDS}
    assert {item["python"] for item in before if "python" in item} == {f"{platform.python_implementation()} {platform.python_version()}"}


def markup_recipe(tmp_path: Path, packages: str) -> Path:
    recipe = tmp_path / "markup.toml"
    recipe.write_text(f'name = "markup"\n[[parts]]\nbuilder = "package_descriptions"\nsource = "markup"\npackages = {packages}\n')
    return recipe


def test_a_listed_package_that_is_not_installed_is_a_note_and_the_manifest_has_versions(tmp_path, monkeypatch):
    import importlib.metadata as md

    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path / "cache"))
    result = build_corpus(str(markup_recipe(tmp_path, '["Rich", "toklab-not-installed"]')))
    assert result.documents == 1 and result.notes == ["markup: package 'toklab-not-installed' is not installed, so the corpus leaves it out"]
    manifest = read_manifest(result.path)
    assert manifest["inputs"] == [{"builder": "package_descriptions", "source": "markup", "packages": {"rich": md.version("rich"), "toklab-not-installed": None}}]
    assert manifest["notes"] == result.notes
    assert [d.id for d in toklab.open_corpus(str(tmp_path / "markup.toml"))] == ["package:rich"]


def test_a_new_version_rebuilds_but_the_same_documents_keep_the_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path / "cache"))
    site = tmp_path / "site"
    info = fake_install(site, "toklab-listed-package", "1.0")
    monkeypatch.syspath_prepend(str(site))
    recipe = str(markup_recipe(tmp_path, '["toklab-listed-package"]'))
    first = build_corpus(recipe)
    fingerprint = toklab.open_corpus(recipe).fingerprint()
    assert first.inputs[0]["packages"] == {"toklab-listed-package": "1.0"}

    import shutil

    shutil.rmtree(info)
    fake_install(site, "toklab-listed-package", "1.1")  # an upgrade with the same README
    again = build_corpus(recipe)
    assert again.rebuilt and again.inputs[0]["packages"] == {"toklab-listed-package": "1.1"}
    assert again.content_hash == first.content_hash
    assert toklab.open_corpus(recipe).fingerprint() == fingerprint  # caches keyed on it stay valid
    assert not build_corpus(recipe).rebuilt

    shutil.rmtree(site / "toklab_listed_package-1.1.dist-info")
    fake_install(site, "toklab-listed-package", "1.2", LONG + "New in 1.2.")
    changed = build_corpus(recipe)
    assert changed.rebuilt and changed.content_hash != first.content_hash
    assert toklab.open_corpus(recipe).fingerprint() != fingerprint


def test_installed_is_an_explicit_opt_in_that_follows_every_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path / "cache"))
    recipe = str(markup_recipe(tmp_path, '"installed"'))
    first = build_corpus(recipe)
    fake_install(tmp_path / "site", "toklab-extra-package")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    after = build_corpus(recipe)
    assert after.rebuilt and after.documents == first.documents + 1
    assert "package:toklab" not in {d.id for d in toklab.open_corpus(recipe)}  # the project's own README changes with every edit
