"""Ctrl-C and SIGTERM as one exception that carries the shell's exit status and the progress made.

A run stopped by Ctrl-C (SIGINT) or by ``kill`` (SIGTERM) ends like a finished one: the workers are
stopped, the journal keeps every row written so far, and the command line says how far it got and
exits with the status a shell gives a process ended by that signal (128 + signal number: 130 for
SIGINT, 143 for SIGTERM). Python's default SIGTERM ends the process at once, without any of that:
:func:`terminate_as_interrupt` turns it into :class:`Interrupted` for the length of a command.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal, with what it had done.

    A KeyboardInterrupt, so that code that lets Ctrl-C through lets this through too.

    Attributes:
        signum: the signal (SIGINT or SIGTERM).
        done: cases finished (journalled or reused) when it stopped; None outside a cohort run.
        total: cases of the run; None outside a cohort run.
    """

    def __init__(
        self, signum: int = signal.SIGINT, done: int | None = None, total: int | None = None
    ) -> None:
        """Record the signal and, in a cohort run, how many of its cases were done."""
        super().__init__(signum, done, total)
        self.signum = int(signum)
        self.done = done
        self.total = total

    @property
    def exit_status(self) -> int:
        """The exit status a shell gives a process ended by this signal: 128 + signal number."""
        return 128 + self.signum

    def progress(self) -> str:
        """``"N of M cases done"``, or "" outside a cohort run."""
        if self.done is None or self.total is None:
            return ""
        return f"{self.done} of {self.total} cases done"


def signal_of(exc: BaseException) -> int:
    """The signal behind an interruption: an Interrupted's own, SIGINT for a plain KeyboardInterrupt."""
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Interrupted` (in the main thread) instead of killing.

    Outside the main thread (where Python cannot set handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
