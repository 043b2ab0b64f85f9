"""Builders for recipe parts: real text that every toklab install already has, no download needed.

Each builder yields Documents in a deterministic order (sorted paths, sorted package names), and
reads only what its parameters name: the standard library, a listed set of packages, or
`gflanguages`. `builder_inputs` says what else a builder's output depends on (the Python version,
the versions of the packages it reads); the recipe build records it and rebuilds when it changes.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata as md
import os
import platform
import re
import sysconfig
from pathlib import Path
from typing import Any, Callable, Iterator

from toklab.corpus.document import Document
from toklab.errors import ToklabError

Builder = Callable[..., Iterator[Document]]

# Parts of the standard library that are tests, generated tables or copies of other parts.
STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test", "pydoc_data", "lib2to3"}

# `packages = "installed"` in a recipe: every installed distribution. An explicit opt-in, since
# such a corpus changes whenever anything is installed.
ALL_INSTALLED = "installed"
MIN_DESCRIPTION_CHARS = 200  # shorter long descriptions are placeholders ("UNKNOWN", one line)


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in STDLIB_SKIP]  # pruned: site-packages may sit inside the stdlib
        files += [Path(folder, n) for n in names if n.endswith(".py")]
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


def normalise_package(name: str) -> str:
    """A distribution name in PEP 503 form, so `Typing_Extensions` and `typing-extensions` are one."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _listed_packages(packages: list[str] | str) -> list[str] | None:
    """The recipe's `packages` as sorted normalised names; None for the opt-in "installed"."""
    if packages == ALL_INSTALLED:
        return None
    if not isinstance(packages, list) or not all(isinstance(p, str) and p.strip() for p in packages):
        raise ToklabError(f'packages must be a list of distribution names, or "{ALL_INSTALLED}" for every installed one')
    return sorted({normalise_package(p) for p in packages})


def _distributions(packages: list[str] | str) -> dict[str, md.Distribution | None]:
    """Each package to read, by normalised name, in sorted order; None when it is not installed."""
    names = _listed_packages(packages)
    if names is not None:
        found: dict[str, md.Distribution | None] = {}
        for name in names:
            try:
                found[name] = md.distribution(name)
            except md.PackageNotFoundError:
                found[name] = None
        return found
    installed: dict[str, md.Distribution | None] = {}
    for dist in md.distributions():
        meta = dist.metadata
        name = normalise_package((meta.get("Name") if meta is not None else None) or "")
        if name and name != "toklab" and name not in installed:  # first on sys.path wins, as for imports
            installed[name] = dist
    return dict(sorted(installed.items()))


def package_descriptions(source: str, packages: list[str] | str) -> Iterator[Document]:
    """The long descriptions (READMEs) of the listed packages, labelled markdown, rst or text.

    `packages` is a list of distribution names; one that is not installed, or whose description
    is shorter than MIN_DESCRIPTION_CHARS, is left out (the build notes the missing ones).
    `"installed"` reads every installed distribution but toklab itself.
    """
    for name, dist in _distributions(packages).items():
        if dist is None:
            continue
        meta = dist.metadata
        text = meta.get_payload() or meta.get("Description") or ""
        if not isinstance(text, str) or len(text.strip()) < MIN_DESCRIPTION_CHARS:
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


def _python() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


@functools.lru_cache(maxsize=1)  # the standard library does not change while a process runs
def _stdlib_digest() -> str:
    """Names and sizes of the standard-library files read: differs where a distribution splits
    the standard library into packages (Debian's python3-tk) even at one Python version."""
    root = Path(sysconfig.get_paths()["stdlib"])
    listing = "\n".join(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}" for p in _stdlib_files())
    return hashlib.blake2b(listing.encode(), digest_size=8).hexdigest()


def _versions(packages: list[str] | str) -> dict[str, str | None]:
    return {name: (dist.version if dist is not None else None) for name, dist in _distributions(packages).items()}


def _gflanguages_version() -> dict[str, str | None]:
    try:
        return {"gflanguages": md.version("gflanguages")}
    except md.PackageNotFoundError:
        return {"gflanguages": None}


# What each builder's output depends on besides its parameters, as JSON-ready values.
INPUTS: dict[str, Callable[..., dict[str, Any]]] = {
    "pydoc_topics": lambda **_: {"python": _python()},
    "docstrings": lambda **_: {"python": _python(), "stdlib_files": _stdlib_digest()},
    "stdlib_source": lambda **_: {"python": _python(), "stdlib_files": _stdlib_digest()},
    "package_descriptions": lambda packages, **_: {"packages": _versions(packages)},
    "gflanguages": lambda **_: {"packages": _gflanguages_version()},
}


def builder_inputs(builder: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the builder's output depends on besides `params`: the Python version, a digest of the
    standard library's file list, or each package's version (None: listed but not installed)."""
    return INPUTS[builder](**params)
