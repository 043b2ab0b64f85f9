"""Filesystem helpers: atomic writes (temporary names, whole folders) and the user cache directory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

from toklab.errors import ToklabError


def temp_name(final: Path) -> Path:
    """The hidden sibling a file is written under before it is renamed to `final`."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final` to fill. When the block succeeds it takes
    `final`'s place whole (an old `final` is moved aside first, then removed); when it fails or is
    interrupted it is removed, and an old `final` stays as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = temp_name(final.with_name(final.name + ".old"))
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def report_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final` to fill with a report's files. When the block
    succeeds each file in it replaces the file of the same name in `final` (renamed into place one
    by one); files of other names in `final`, such as a user's notes, are left alone. When it fails
    or is interrupted, `final` stays as it was."""
    final = Path(final)
    final.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        items = sorted(tmp.iterdir())
        for item in items:  # checked before anything is replaced: a user's folder is never deleted
            target = final / item.name
            if target.is_dir() and not item.is_dir():
                raise ToklabError(f"{target} is a folder where the report writes a file; move it away")
        for item in items:
            target = final / item.name
            if item.is_dir() and target.is_dir():
                old = temp_name(target.with_name(target.name + ".old"))
                os.replace(target, old)
                os.replace(item, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether `path` is `root` or lies below it (both resolved, so links and '..' do not fool it)."""
    path, root = Path(path).expanduser().resolve(), Path(root).expanduser().resolve()
    return path == root or path.is_relative_to(root)


def check_outside(out: str | os.PathLike, inputs: "list[Path]", option: str = "--out") -> None:
    """Refuse an output folder that lies inside an input (it would be read back as input) or that
    contains one (replacing it could delete the input). One rule for every command."""
    for root in inputs:
        if is_inside(out, root):
            raise ToklabError(f"{option} {out} is inside the input {root}; choose a folder outside it")
        if is_inside(root, out):
            raise ToklabError(f"{option} {out} contains the input {root}; choose a folder outside it")


def check_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse a folder path that is a file, or that lies below a file (`data.jsonl/sub`)."""
    path = Path(path)
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                where = "is a file" if part == path else f"lies below the file {part}"
                raise ToklabError(f"{option} {path} {where}; choose a folder")
            break
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (on Windows, assumed so: os.kill would end it)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Remove the temporaries (see `temp_name`) that processes which no longer run left in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for item in folder.glob(".*.tmp"):
        pid = item.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)


def remove_owned(folder: str | os.PathLike, names: "list[str] | tuple[str, ...]") -> None:
    """Remove the files and folders toklab wrote in `folder` (by name), and stale temporaries;
    anything else in it, such as a user's notes, stays."""
    folder = Path(folder)
    for name in names:
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    remove_stale_temporaries(folder)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file under a temporary name, then rename it into place."""
    final = Path(path)
    tmp = temp_name(final)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, final)
    return final


REPORTS = Path("reports")  # where commands write when no --out is given


def slug(text: str, max_len: int = 100) -> str:
    """`text` as one file name: each run of characters other than letters, digits, '.', '_' and
    '-' becomes '-'. A longer name keeps its start and ends in a short hash of the whole text, so
    two long names that differ only at the end stay apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
    if safe in ("", ".", ".."):
        safe = "unnamed"
    if len(safe) > max_len:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
        safe = safe[: max_len - len(digest) - 1].rstrip("-.") + "-" + digest
    return safe


def changed_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The settings that differ between two runs' saved settings, as dotted names (train.lr)."""
    changed = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def cache_key(label: str, payload: str) -> str:
    """A cache entry's folder name: a readable label (characters outside letters, digits, '.',
    '_' and '-' become '_', at most 60 of them), then a hash of everything that decides the entry."""
    digest = hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)[:60]}-{digest}"


def default_output(command: str, *parts: str) -> Path:
    """The folder a command writes to when no --out is given: reports/<command>-<part>-..., named
    after what makes its runs differ (corpus, segmenters, budget ...), so that two different runs
    do not meet in one folder. Empty parts are left out."""
    return REPORTS / slug("-".join([command, *(p for p in parts if p)]))


def cache_dir() -> Path:
    """Where toklab keeps built corpora and trained artefacts.

    `TOKLAB_CACHE_DIR` wins, then `$XDG_CACHE_HOME/toklab`, then `~/.cache/toklab`.
    """
    explicit = os.environ.get("TOKLAB_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "toklab"
