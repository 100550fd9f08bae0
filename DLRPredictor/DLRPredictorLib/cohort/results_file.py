"""The results CSV's place: checked before a run, locked during it, and its write failures in one line.

- :func:`check_results_path`: ``--out`` must name a file in a folder this process can write to;
  a folder, a path under a file or a read-only place is refused before any work.
- :class:`ResultsLock`: a second run on the same ``--out`` (it would interleave its journal rows
  with the first's, then replace its results) is refused while the first holds ``<out>.lock``.
- :func:`write_failed`: a write that fails during the run (disk full) as one line that says the
  rows finished so far are kept.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from ..base.errors import InputError


def check_results_path(out: Path, option: str = "--out") -> None:
    """Refuse a results path that cannot be written, before any work; create its folder.

    Args:
        out: the results CSV path.
        option: the option that named it, for the message.

    Raises:
        InputError: ``out`` is a folder, its folder cannot be created (a file is in the way) or
            is not writable (read-only file system, permissions).
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(
            f"{option} '{out}' is a folder; name the results CSV inside it, e.g. '{out / 'results.csv'}'"
        )
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{option} '{out}': '{folder}' is not a folder") from None
    except OSError as exc:
        raise InputError(
            f"{option} '{out}': cannot create the folder '{folder}' ({exc.strerror or exc})"
        ) from None
    # A real write, not os.access: that says yes to root on a read-only mount's bind, no to ACLs.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise InputError(f"{option} '{out}': cannot write in '{folder}' ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def write_failed(out: Path, exc: OSError) -> InputError:
    """The one-line error of a results or journal write that failed during a run (e.g. disk full)."""
    return InputError(
        f"cannot write the results '{out}' ({exc.strerror or exc}); the cases finished so far are "
        "kept in its journal: make room and rerun the same command to resume"
    )


def lock_path(out: Path) -> Path:
    """The lock file of a results CSV: ``RESULTS.csv.lock`` next to it."""
    return out.with_name(out.name + ".lock")


#: Windows locks a byte range; this one, far past the pid written at the start, keeps the pid readable.
_WINDOWS_LOCK_OFFSET = 1 << 20


def _try_lock(f: IO[Any]) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    try:
        if sys.platform == "win32":
            import msvcrt

            f.seek(_WINDOWS_LOCK_OFFSET)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            return False
        raise
    return True


class ResultsLock:
    """An exclusive lock on a results CSV for the length of a run (``<out>.lock``, removed on release).

    The operating system releases the lock when the process ends, however it ends; a lock file
    left by a killed run is taken over by the next one.
    """

    def __init__(self, out: Path) -> None:
        """Prepare the lock of ``out`` (nothing is taken until :meth:`acquire`)."""
        self.out = Path(out)
        self.path = lock_path(self.out)
        self._file: IO[Any] | None = None

    def acquire(self) -> ResultsLock:
        """Take the lock and write this process's id into the lock file.

        Raises:
            InputError: another process holds it (the message names its pid).
        """
        while True:
            f = open(self.path, "a+", encoding="utf-8")  # closed in release() or below
            if not _try_lock(f):
                f.seek(0)
                pid = f.read(32).strip() or "unknown"
                f.close()
                raise InputError(
                    f"another run is writing {self.out.name} (pid {pid}); wait for it or choose another --out"
                )
            # The holder before us may have removed the file between our open and our lock: then
            # we hold a lock on a file no one else will open; try again on the one at the path.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(f.fileno()), current):
                break
            f.close()
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        f, self._file = self._file, None
        if f is None:
            return
        if sys.platform == "win32":
            f.close()  # Windows removes no open file; the lock goes with the handle
            try:
                os.unlink(self.path)
            except OSError:
                pass
            return
        try:
            os.unlink(self.path)  # while still held: a waiting run then retries on a new file
        except FileNotFoundError:
            pass
        f.close()

    def __enter__(self) -> ResultsLock:
        """Acquire the lock."""
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        """Release the lock."""
        self.release()
