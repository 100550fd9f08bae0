"""Process-wide thread limits held while a prediction needs them, then restored.

SimpleITK's default thread count and OpenBLAS' thread count are process-wide settings, not
per-thread ones. During a prediction the network runs on a helper thread while pyradiomics
runs on the calling one (``predictor``); each of them splitting its work over both cores only
makes it wait for the core the other one is busy on. A :class:`SharedLimit` applies the limit
when its first user enters and restores the process's own setting when its last user leaves,
so nested and concurrent uses never leave the limit behind (e.g. in the Slicer process, whose
other work keeps its thread counts).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class SharedLimit:
    """A reference-counted process-wide setting.

    Args:
        apply: sets the limit and returns the function that restores the previous setting.
    """

    def __init__(self, apply: Callable[[], Callable[[], None]]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._users = 0
        self._restore: Callable[[], None] | None = None

    @property
    def users(self) -> int:
        """How many users hold the limit now."""
        return self._users

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the limit for the ``with`` block (applied by the first user, restored by the last)."""
        with self._lock:
            if self._users == 0:
                self._restore = self._apply()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._restore is not None:
                    self._restore()
                    self._restore = None


def _itk_one_thread() -> Callable[[], None]:
    import SimpleITK as sitk

    saved = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    return lambda: sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(saved)


@functools.cache
def _blas_controller() -> Any:
    # Finding the loaded BLAS libraries costs about 2 ms; the limit itself about 30 us.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _blas_one_thread() -> Callable[[], None]:
    limits: Any = _blas_controller().limit(limits=1, user_api="blas")
    return limits.restore_original_limits


#: SimpleITK filters created while held run on one thread. bench_ratio.py, runs minutes apart:
#: a full DLR prediction took 1.24 times pyradiomics' own extraction with SimpleITK's default
#: threads, 1.03 with SimpleITK single-threaded.
ITK_ONE_THREAD = SharedLimit(_itk_one_thread)
#: numpy's BLAS (the network's convolutions, pyradiomics' numpy.linalg) on one thread while held.
BLAS_ONE_THREAD = SharedLimit(_blas_one_thread)
