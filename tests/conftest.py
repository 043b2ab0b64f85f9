"""Shared fixtures: an isolated toklab cache, and the read-only ../shared folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The read-only folder of corpora and tiktoken vocabularies beside the checkout; TOKLAB_SHARED_DIR
# points elsewhere (a clone that does not sit beside it).
SHARED = Path(os.environ["TOKLAB_SHARED_DIR"]).expanduser() if os.environ.get("TOKLAB_SHARED_DIR") else REPO.parent / "shared"


def tiktoken_dir() -> Path | None:
    """tiktoken's vocabularies: TIKTOKEN_CACHE_DIR when it names a folder, else SHARED/tiktoken."""
    explicit = os.environ.get("TIKTOKEN_CACHE_DIR")
    if explicit and Path(explicit).expanduser().is_dir():
        return Path(explicit).expanduser()
    return SHARED / "tiktoken" if (SHARED / "tiktoken").is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never touch the user's cache; the default corpus is built once per session."""
    cache = tmp_path_factory.mktemp("toklab-cache")
    old = os.environ.get("TOKLAB_CACHE_DIR")
    os.environ["TOKLAB_CACHE_DIR"] = str(cache)
    vocabularies = tiktoken_dir()
    if vocabularies is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(vocabularies))
    yield cache
    if old is None:
        os.environ.pop("TOKLAB_CACHE_DIR", None)
    else:
        os.environ["TOKLAB_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    path = SHARED / "corpora"
    if not path.is_dir():
        pytest.skip(f"{path} is not present (set TOKLAB_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def default_corpus_build(isolated_cache: Path):
    import toklab

    return toklab.build_default_corpus()


@pytest.fixture(scope="session")
def shared_tiktoken() -> Path:
    path = tiktoken_dir()
    if path is None:
        pytest.skip("no tiktoken vocabularies: set TIKTOKEN_CACHE_DIR or TOKLAB_SHARED_DIR")
    return path
