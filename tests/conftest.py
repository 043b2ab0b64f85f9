"""Shared fixtures: an isolated toklab cache, and the read-only ../shared folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never touch the user's cache; the default corpus is built once per session."""
    cache = tmp_path_factory.mktemp("toklab-cache")
    old = os.environ.get("TOKLAB_CACHE_DIR")
    os.environ["TOKLAB_CACHE_DIR"] = str(cache)
    if (SHARED / "tiktoken").is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
    yield cache
    if old is None:
        os.environ.pop("TOKLAB_CACHE_DIR", None)
    else:
        os.environ["TOKLAB_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    path = SHARED / "corpora"
    if not path.is_dir():
        pytest.skip("../shared/corpora is not present")
    return path


@pytest.fixture(scope="session")
def default_corpus_build(isolated_cache: Path):
    import toklab

    return toklab.build_default_corpus()


@pytest.fixture(scope="session")
def shared_tiktoken() -> Path:
    path = SHARED / "tiktoken"
    if not path.is_dir():
        pytest.skip("../shared/tiktoken is not present")
    return path
