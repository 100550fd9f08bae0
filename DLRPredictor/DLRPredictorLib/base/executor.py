"""Where independent pieces of work run: an ordered map, in this process or on a cluster.

Training hands its independent pieces (one radiomics extraction, one case's crops, one fold) to a
:data:`MapFunction`; the default runs them here, one after the other (:func:`serial_map`). The
command line passes a cluster's map when given ``--scheduler`` (``cohort.dask_runner.cluster_map``):
this module holds only the contract, so that training (layer 5) needs nothing from the layers above.
The command line either passes it down or makes it the active map for a call (:func:`mapping`).

The contract: ``map_fn(fn, items)`` returns ``[fn(item) for item in items]``, in the order of
``items``; ``fn`` and the items may be pickled and run in other processes, so ``fn`` must not rely
on changing its caller's objects (it returns what it made).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: ``(fn, items) -> [fn(item) for item in items]``, in order, wherever it runs.
MapFunction = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def serial_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """The map that runs every item here, in order."""
    return [fn(item) for item in items]


_ACTIVE: ContextVar[MapFunction | None] = ContextVar("dlrpredictor_map", default=None)


@contextmanager
def mapping(map_fn: MapFunction) -> Iterator[None]:
    """Make ``map_fn`` the :func:`active_map` inside the ``with`` block (this thread/context only)."""
    token = _ACTIVE.set(map_fn)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_map() -> MapFunction | None:
    """The map set by :func:`mapping`, or None (run here)."""
    return _ACTIVE.get()
