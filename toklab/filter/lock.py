"""The --out lock: one run at a time writes an output folder (an flock on a file holding its pid)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from toklab.errors import ToklabError
from toklab.files import pid_alive
from toklab.filter.oserrors import cannot_write, why

LOCK_FILE = ".toklab-filter.lock"  # holds the pid of the run writing --out
held_locks: set[int] = set()  # descriptors of the --out locks this process holds; a forked worker closes its copies


class OutLock:
    """One run at a time writes an output folder: it holds a lock on a file in it that records its
    pid. The lock is an flock, so the kernel lets go of it when its process dies, however it dies,
    and a later run takes over the stale file; without fcntl the file itself is the lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX
            fcntl = None  # type: ignore[assignment]
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (0 if fcntl is not None else os.O_EXCL), 0o644)
            except FileExistsError:
                owner = self.owner()
                if owner is None or owner == os.getpid() or pid_alive(owner):
                    raise self._busy(owner, hint=True) from None
                self._unlink(None)  # a stale lock of a process that is gone
                continue
            except OSError as exc:
                raise cannot_write(self.folder, exc) from exc
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise self._busy(self.owner()) from None
                    raise ToklabError(f"cannot lock {self.path}: {why(exc)}") from exc
                if not self._is(fd):  # its last holder removed it as we opened it: lock the new one
                    os.close(fd)
                    continue
            self.fd = fd
            held_locks.add(fd)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as exc:
                self.release()
                raise cannot_write(self.path, exc) from exc
            return
        raise self._busy(self.owner())

    def owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _busy(self, owner: int | None, hint: bool = False) -> ToklabError:
        who = f"process {owner}" if owner is not None else "another process"
        extra = f" (if no toklab run is writing there, delete {self.path})" if hint else ""
        return ToklabError(f"--out {self.folder} is in use by {who}; wait for it to end or stop it{extra}")

    def _is(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def _unlink(self, fd: int | None) -> None:
        try:
            if fd is None or self._is(fd):
                self.path.unlink()
        except OSError:
            pass

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        held_locks.discard(fd)
        self._unlink(fd)  # while still holding it, so no one takes a file that is about to go
        os.close(fd)
