"""Builders for recipe parts: real text that every toklab install already has, no download needed.

Each builder yields Documents in a deterministic order for a given environment (sorted paths,
sorted package names), so a rebuild gives the same corpus.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from pathlib import Path
from typing import Any, Callable, Iterator

from toklab.corpus.document import Document

Builder = Callable[..., Iterator[Document]]

# Parts of the standard library that are tests, generated tables or copies of other parts.
STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test", "pydoc_data", "lib2to3"}


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not STDLIB_SKIP & set(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _stdlib_name(path: Path) -> str:
    return path.relative_to(Path(sysconfig.get_paths()["stdlib"])).as_posix()


def pydoc_topics(source: str) -> Iterator[Document]:
    """The language reference topics that Python's own `help()` shows, one document each."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(id=f"pydoc:{name}", text=topics[name], source=source)


def docstrings(source: str, max_doc_bytes: int = 200_000) -> Iterator[Document]:
    """Every docstring of each standard-library module, joined into one document per module.

    Read with `ast`, so no module is imported.
    """
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        texts = [doc for doc in (ast.get_docstring(n, clean=True) for n in nodes) if doc]
        text = "\n\n".join(texts)
        if text and len(text.encode()) <= max_doc_bytes:
            yield Document(id=f"docstrings:{_stdlib_name(path)}", text=text, source=source)


def stdlib_source(source: str, max_doc_bytes: int = 200_000) -> Iterator[Document]:
    """Standard-library source files, in an order hashed from their names so any cap spreads across packages."""
    files = sorted(_stdlib_files(), key=lambda p: hashlib.blake2b(_stdlib_name(p).encode(), digest_size=8).digest())
    for path in files:
        data = path.read_bytes()
        if not data.strip() or len(data) > max_doc_bytes:
            continue
        yield Document(id=f"stdlib:{_stdlib_name(path)}", text=data.decode("utf-8", errors="replace"), source=source)


def package_descriptions(source: str) -> Iterator[Document]:
    """Installed packages' long descriptions (their README), labelled markdown, rst or text."""
    import importlib.metadata as md

    seen: dict[str, Any] = {}
    for dist in md.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name and name != "toklab" and name not in seen:
            seen[name] = dist
    for name in sorted(seen):
        meta = seen[name].metadata
        text = meta.get_payload() or meta.get("Description") or ""
        if not isinstance(text, str) or len(text.strip()) < 200:
            continue
        content_type = (meta.get("Description-Content-Type") or "").lower()
        kind = "markdown" if "markdown" in content_type else "rst" if "rst" in content_type else "text"
        yield Document(id=f"package:{name}", text=text, source=f"{source}/{kind}")


def gflanguages_samples(source: str) -> Iterator[Document]:
    """UDHR sample texts shipped in the `gflanguages` package, one document per language and script."""
    try:
        import gflanguages
    except ImportError:
        return
    languages = gflanguages.LoadLanguages()
    for lang_id in sorted(languages):
        lang = languages[lang_id]
        if not lang.HasField("sample_text"):
            continue
        # The specimens overlap (longer ones contain shorter ones): keep each distinct text once.
        pieces: list[str] = []
        for fld, value in sorted(lang.sample_text.ListFields(), key=lambda fv: fv[0].name):
            if fld.name.startswith(("specimen", "tester")) and isinstance(value, str):
                if not any(value in piece for piece in pieces):
                    pieces = [p for p in pieces if p not in value] + [value]
        text = "\n".join(pieces)
        if text.strip():
            yield Document(id=f"udhr:{lang_id}", text=text, source=f"{source}/{lang.script or 'unknown'}")


BUILDERS: dict[str, Builder] = {
    "pydoc_topics": pydoc_topics,
    "docstrings": docstrings,
    "stdlib_source": stdlib_source,
    "package_descriptions": package_descriptions,
    "gflanguages": gflanguages_samples,
}
