"""The toklab cache (`files.cache_dir()`): what is in it, how big, and clearing it safely.

Three kinds of entry are written there, each one folder under its kind's folder, finished when
its manifest is in it (they are built under a temporary name and renamed, see `files.atomic_dir`):

- `corpora/<recipe>`: built corpus recipes (`toklab.corpus.recipes`, manifest.json),
- `segmenters/<kind-size-hash>`: trained segmenters (`toklab.segmenters.registry`,
  toklab-segmenter.json),
- `tokens/<segmenter-hash>`: token shards for pretraining (`toklab.gpt.data`, manifest.json).

Temporaries (`.<name>.<pid>.tmp`) are what an interrupted build left. Clearing removes only
these entries (a temporary only when its process no longer runs); anything else in the folder
was not written by toklab and is shown but left alone. Links are never followed: a link is
counted as itself and removed as itself, never what it points to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from toklab.errors import ToklabError
from toklab.files import cache_dir, pid_alive

# sub-folder -> (what it holds, the file that marks a finished entry). Kept in step with the
# modules that write them (a test checks the manifest names).
KINDS: dict[str, tuple[str, str]] = {
    "corpora": ("built corpora", "manifest.json"),
    "segmenters": ("trained segmenters", "toklab-segmenter.json"),
    "tokens": ("token data", "manifest.json"),
}
TEMPORARY = "temporary"
OTHER = "other"
TEMP_NAME = re.compile(r"^\..+\.(\d+)\.tmp$")  # files.temp_name: .<name>.<pid>.tmp
AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$", re.IGNORECASE)
AGE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class CacheEntry:
    """One entry of the cache: a finished build, a temporary, or something toklab did not write."""

    kind: str  # a KINDS key, TEMPORARY or OTHER
    name: str  # path relative to the cache folder, e.g. "segmenters/bpe-32k-0123abcd"
    path: Path
    bytes: int
    files: int
    modified: float  # seconds since the epoch: when it was written (its manifest's time)
    description: str = ""
    removable: bool = True  # what `clear` may remove
    note: str = ""  # why it is not removable, or what is odd about it

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


@dataclass
class CacheInfo:
    path: Path
    source: str  # what chose the folder: TOKLAB_CACHE_DIR, XDG_CACHE_HOME or the default
    exists: bool
    entries: list[CacheEntry] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries)

    def by_kind(self) -> dict[str, dict[str, int]]:
        """Kind -> {"entries", "bytes"}, in KINDS order, then temporaries and others (only kinds present)."""
        out: dict[str, dict[str, int]] = {}
        for kind in [*KINDS, TEMPORARY, OTHER]:
            entries = [e for e in self.entries if e.kind == kind]
            if entries:
                out[kind] = {"entries": len(entries), "bytes": sum(e.bytes for e in entries)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "source": self.source,
            "exists": self.exists,
            "total_bytes": self.total_bytes,
            "by_kind": self.by_kind(),
            "entries": [e.to_dict() for e in self.entries],
        }


@dataclass
class ClearResult:
    path: Path
    removed: list[CacheEntry]
    failed: list[tuple[CacheEntry, str]]  # (entry, why) for entries that could not be removed

    @property
    def bytes_freed(self) -> int:
        return sum(e.bytes for e in self.removed)


def cache_source() -> str:
    """What chose `cache_dir()`: the variable that set it, or 'default' (~/.cache/toklab)."""
    if os.environ.get("TOKLAB_CACHE_DIR"):
        return "TOKLAB_CACHE_DIR"
    if os.environ.get("XDG_CACHE_HOME"):
        return "XDG_CACHE_HOME"
    return "default"


def kind_label(kind: str) -> str:
    """'segmenters' -> 'trained segmenters'."""
    if kind in KINDS:
        return KINDS[kind][0]
    return {TEMPORARY: "left by interrupted builds", OTHER: "not written by toklab"}.get(kind, kind)


def _size(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path`, links counted as themselves and never followed."""
    try:
        st = path.lstat()
    except OSError:
        return 0, 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size, 1
    total, files = 0, 0
    for root, dirs, names in os.walk(path, followlinks=False):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _describe(kind: str, manifest: dict[str, Any]) -> str:
    """A short line from an entry's manifest; '' when it says nothing usable."""

    def number(key: str) -> str:
        value = manifest.get(key)
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"

    if kind == "segmenters":
        return f"{manifest.get('spec') or manifest.get('kind') or '?'} ({number('vocab_size')} ids)"
    if kind == "tokens":
        splits = manifest.get("splits") if isinstance(manifest.get("splits"), dict) else {}
        tokens = sum(s.get("tokens", 0) for s in splits.values() if isinstance(s, dict) and isinstance(s.get("tokens"), int))
        return f"{manifest.get('segmenter', '?')} on {manifest.get('corpus', '?')} ({tokens:,} tokens)"
    if kind == "corpora":
        return f"{manifest.get('recipe', '?')}: {number('documents')} documents, {number('bytes')} bytes"
    return ""


def _entry(kind: str, path: Path, root: Path) -> CacheEntry:
    name = path.relative_to(root).as_posix()
    size, files = _size(path)
    modified = _mtime(path)
    temp = TEMP_NAME.match(path.name)
    if temp:
        pid = int(temp.group(1))
        busy = pid != os.getpid() and pid_alive(pid)
        note = f"being written by process {pid}" if busy else "left by an interrupted build"
        return CacheEntry(TEMPORARY, name, path, size, files, modified, "", removable=not busy, note=note)
    if path.is_symlink():
        return CacheEntry(OTHER, name, path, size, files, modified, "", removable=False, note="a link, not written by toklab")
    if kind in KINDS and path.is_dir():
        marker = path / KINDS[kind][1]
        if marker.is_file() and not marker.is_symlink():
            try:
                manifest = json.loads(marker.read_text(encoding="utf-8"))
                description = _describe(kind, manifest) if isinstance(manifest, dict) else ""
            except (OSError, ValueError):
                description = ""
            return CacheEntry(kind, name, path, size, files, _mtime(marker), description or f"damaged {marker.name}")
        return CacheEntry(OTHER, name, path, size, files, modified, "", removable=False, note=f"no {KINDS[kind][1]}: not written by toklab")
    return CacheEntry(OTHER, name, path, size, files, modified, "", removable=False, note="not written by toklab")


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ToklabError(f"cannot read the cache folder {folder}: {exc.strerror or exc}") from None


def cache_info(path: str | os.PathLike | None = None) -> CacheInfo:
    """Every entry of the cache (default: `cache_dir()`), with its kind, size and age."""
    root = Path(path).expanduser() if path is not None else cache_dir()
    info = CacheInfo(root, cache_source() if path is None else "given", root.is_dir())
    if root.exists() and not root.is_dir():
        raise ToklabError(f"the cache folder {root} is a file ({info.source}); point TOKLAB_CACHE_DIR at a folder")
    check_clearable(root)  # never walk (or clear) a whole disk or home folder
    for child in _children(root):
        if child.name in KINDS and child.is_dir() and not child.is_symlink():
            info.entries += [_entry(child.name, item, root) for item in _children(child)]
        else:
            info.entries.append(_entry(OTHER, child, root))
    order = [*KINDS, TEMPORARY, OTHER]
    info.entries.sort(key=lambda e: (order.index(e.kind), e.name))
    return info


def parse_age(text: str) -> float:
    """'30d' -> seconds (s, m or min, h, d, w)."""
    match = AGE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ToklabError(f"--older-than {text}: give a positive age such as 30d, 12h, 2w or 90m")
    return float(match.group(1)) * AGE_UNITS[match.group(2).lower()]


def parse_kinds(texts: Iterable[str]) -> set[str]:
    """'segmenters,tokens' -> {"segmenters", "tokens"}; `temporary` names leftovers."""
    known = [*KINDS, TEMPORARY]
    kinds = {k.strip().lower() for text in texts for k in text.split(",") if k.strip()}
    unknown = sorted(kinds - set(known))
    if unknown:
        raise ToklabError(f"unknown cache kind(s) {', '.join(unknown)} (use {', '.join(known)})")
    return kinds


def select(info: CacheInfo, *, older_than: float | None = None, kinds: "set[str] | None" = None, now: float | None = None) -> list[CacheEntry]:
    """The removable entries of `info` of the given kinds (default: all) written more than
    `older_than` seconds ago (default: any age)."""
    now = time.time() if now is None else now
    return [
        e for e in info.entries
        if e.removable and (not kinds or e.kind in kinds) and (older_than is None or now - e.modified > older_than)
    ]  # fmt: skip


def check_clearable(root: Path) -> Path:
    """Refuse a cache folder that cannot be one: a filesystem root, the home folder or a folder
    holding it. Returns the folder, resolved."""
    resolved = root.expanduser().resolve()
    home = Path.home().expanduser().resolve()
    if resolved == Path(resolved.anchor):
        raise ToklabError(f"refusing to use {root} as the toklab cache: it is a filesystem root (set TOKLAB_CACHE_DIR to a folder of its own)")
    if resolved == home or home.is_relative_to(resolved):
        raise ToklabError(f"refusing to use {root} as the toklab cache: it is your home folder or holds it (set TOKLAB_CACHE_DIR to a folder of its own)")
    return resolved


def _remove(entry: CacheEntry, root: Path) -> None:
    """Remove one entry, which must lie directly in `root` or in one of its kind folders; a link is
    removed as itself."""
    path = entry.path
    parent = path.parent.resolve()
    if not (parent == root or (parent.parent == root and parent.name in KINDS)):
        raise ToklabError(f"{path} is not in the cache folder {root}")
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)  # removes links inside as links; never follows them


def clear(entries: list[CacheEntry], path: str | os.PathLike | None = None) -> ClearResult:
    """Remove `entries` (from `cache_info` / `select`) from the cache folder. Only removable
    entries inside it are touched; empty kind folders are removed after them."""
    root = check_clearable(Path(path).expanduser() if path is not None else cache_dir())
    removed: list[CacheEntry] = []
    failed: list[tuple[CacheEntry, str]] = []
    for entry in entries:
        if not entry.removable:
            failed.append((entry, entry.note or "not removable"))
            continue
        try:
            _remove(entry, root)
        except ToklabError as exc:
            failed.append((entry, str(exc)))
        except OSError as exc:
            failed.append((entry, exc.strerror or str(exc)))
        else:
            removed.append(entry)
    for kind in KINDS:
        folder = root / kind
        if folder.is_dir() and not folder.is_symlink():
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass
    return ClearResult(root, removed, failed)
