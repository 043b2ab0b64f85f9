"""Where toklab keeps its cache, and the temporary names it writes under."""

from __future__ import annotations

from pathlib import Path

from toklab.files import cache_dir, temp_name


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKLAB_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TOKLAB_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "toklab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "toklab"


def test_temp_name_is_a_hidden_sibling():
    final = Path("/data/out/shard-00000.parquet")
    tmp = temp_name(final)
    assert tmp.parent == final.parent
    assert tmp.name.startswith(".shard-00000.parquet.") and tmp.name.endswith(".tmp")
