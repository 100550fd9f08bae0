"""Readies the batch fork server: last of its preloaded modules (see ``pool.WORKER_PRELOAD``).

Imported by the fork server once its other imports are done, and acting only there (the
environment variable :data:`BUNDLE_ENV` is set by ``pool.start_worker_server`` just for the
server's start; anywhere else importing this module does nothing). It

1. limits BLAS and SimpleITK to one thread, as every worker is anyway, so that loading
   starts no thread pool: the server stays safe to fork;
2. verifies and loads the batch's bundle and its network once, into ``predictor``'s cache. Every
   worker forked afterwards finds it there (the cache re-checks the files' size, time and inode,
   and re-verifies in full on any change) instead of each re-hashing the bundle and rebuilding
   the network, which took about 0.6 s per worker on 2 cores;
3. freezes the garbage collector's view of everything loaded so far (``gc.freeze``), so that
   the workers' collections never walk, and so never copy, the pages they share with the server.

A bundle that fails to load here is left to the workers, which report it as usual.
"""

from __future__ import annotations

import gc
import os

#: Set to the bundle folder for the fork server's start only.
BUNDLE_ENV = "DLRPREDICTOR_WORKER_SERVER_BUNDLE"
#: The value of :data:`BUNDLE_ENV` that means the bundled default model.
DEFAULT_BUNDLE = ":default:"

#: What the preparation did in this process (for tests): "idle", "loaded" or "load failed: ...".
STATE = "idle"


def _prepare(bundle: str) -> str:
    from ..inference import predictor

    predictor.set_threads(1)
    try:
        pred = predictor.load_predictor(None if bundle == DEFAULT_BUNDLE else bundle)
        pred.deep_model()
    except Exception as exc:  # the workers load it themselves and report the error per case
        return f"load failed: {type(exc).__name__}: {exc}"
    return "loaded"


_bundle = os.environ.pop(BUNDLE_ENV, None)
if _bundle:
    STATE = _prepare(_bundle)
    gc.freeze()
