"""Fixtures for the long-document tests of every kind: one long real text and a small CUT_CHARS."""

from __future__ import annotations

import pytest

import toklab
import toklab.segmenters.base as base

LONG_CHARS = 1_200_000  # the long text: real documents joined with "\n"
CUT = 50_000  # CUT_CHARS in these tests, so the long text comes in about 24 pieces


@pytest.fixture(scope="module")
def long_text(shared_corpora) -> str:
    """Real documents of the four shared corpora, in turn, joined with "\n"."""
    streams = [iter(toklab.open_corpus(str(shared_corpora / name), val_fraction=0.0).documents()) for name in ("sotu", "email", "code", "udhr")]
    docs: list[str] = []
    size = 0
    while size < LONG_CHARS and streams:
        for stream in list(streams):
            doc = next(stream, None)
            if doc is None:
                streams.remove(stream)
                continue
            docs.append(doc.text)
            size += len(doc.text) + 1
    return "\n".join(docs)


@pytest.fixture
def small_cut(monkeypatch):
    monkeypatch.setattr(base, "CUT_CHARS", CUT)
    monkeypatch.setenv("TOKLAB_CUT_CHARS", str(CUT))
