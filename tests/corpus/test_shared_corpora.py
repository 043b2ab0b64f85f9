"""Reading the real parquet shards in ../shared/corpora (skipped when absent)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import toklab


@pytest.mark.parametrize("name", ["sotu", "email", "code", "udhr"])
def test_reader_agrees_with_pyarrow(shared_corpora, name):
    folder = shared_corpora / name
    shards = sorted(folder.glob("*.parquet"))
    table = pq.read_table(shards[0]) if len(shards) == 1 else pq.read_table(folder)
    rows = [r for r in table.to_pylist() if r["text"]]
    corpus = toklab.open_corpus(str(folder))
    docs = list(corpus)
    assert [d.id for d in docs] == [r["id"] for r in rows]
    assert [d.source for d in docs] == [r["source"] for r in rows]
    assert sum(d.n_bytes for d in docs) == sum(len(r["text"].encode()) for r in rows) == corpus.stats.bytes
    assert all(d.meta == {"license": r["license"]} for d, r in zip(docs[:20], rows))
    assert corpus.stats.empty_skipped == table.num_rows - len(rows)


def test_known_sizes(shared_corpora):
    counts = {name: toklab.corpus_info(toklab.open_corpus(str(shared_corpora / name))).documents for name in ["sotu", "code", "udhr"]}
    assert counts == {"sotu": 233, "code": 672, "udhr": 745}


def test_udhr_sources_are_scripts_and_split_is_stable(shared_corpora):
    corpus = toklab.open_corpus(str(shared_corpora / "udhr"), val_fraction=0.2)
    val = [d.id for d in corpus.val()]
    train = [d.id for d in corpus.train()]
    assert not set(val) & set(train) and len(val) + len(train) == 745
    assert all(toklab.split_of(i, 0.2) == "val" for i in val)
    # capping the corpus keeps every surviving document in its split
    capped = toklab.open_corpus(str(shared_corpora / "udhr"), val_fraction=0.2, max_docs=100)
    assert set(d.id for d in capped.val()) == set(val) & set(d.id for d in capped)
    info = toklab.corpus_info(corpus)
    assert info.per_source["source"].str.startswith("udhr/").all()
    assert "udhr/Latn" in set(info.per_source["source"])
