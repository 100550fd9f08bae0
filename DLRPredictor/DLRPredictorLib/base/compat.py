"""Python 3.9 stand-ins for newer built-ins.

3D Slicer 5.4 to 5.8 embed Python 3.9, 5.10 and later Python 3.12; everything that runs inside
Slicer (DLRPredictorLib, DLRPredictor.py, Resources/Scripts) must run on both. This module holds the
few helpers that replace newer built-in features; test_py39_compat.py keeps newer ones out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

# Marks an exhausted iterator (None could be a real item).
_EXHAUSTED = object()


def zip_strict(*iterables: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """``zip(*iterables, strict=True)`` (Python 3.10+) for Python 3.9.

    Like the built-in, it is lazy and raises only when iteration reaches the first exhausted
    argument, after yielding the tuples before it.

    Args:
        iterables: the iterables to zip.

    Yields:
        One tuple per position, as zip does.

    Raises:
        ValueError: the arguments have different lengths (same message as the built-in).
    """
    if not iterables:
        return
    iterators = [iter(iterable) for iterable in iterables]
    while True:
        items = []
        for index, iterator in enumerate(iterators):
            item = next(iterator, _EXHAUSTED)
            if item is _EXHAUSTED:
                if index > 0:
                    earlier = "argument 1" if index == 1 else f"arguments 1-{index}"
                    raise ValueError(f"zip() argument {index + 1} is shorter than {earlier}")
                for later, other in enumerate(iterators[1:], start=2):
                    if next(other, _EXHAUSTED) is not _EXHAUSTED:
                        earlier = "argument 1" if later == 2 else f"arguments 1-{later - 1}"
                        raise ValueError(f"zip() argument {later} is longer than {earlier}")
                return
            items.append(item)
        yield tuple(items)
