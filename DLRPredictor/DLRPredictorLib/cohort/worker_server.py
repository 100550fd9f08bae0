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

Each worker calls :func:`bind_worker_to_server` first, so that a driver killed outright (SIGKILL,
out of memory) leaves no process behind: the server exits when the driver is gone, and each worker
is killed by the kernel when the server exits.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

#: Set to the bundle folder for the fork server's start only.
BUNDLE_ENV = "DLRPREDICTOR_WORKER_SERVER_BUNDLE"
#: The value of :data:`BUNDLE_ENV` that means the bundled default model.
DEFAULT_BUNDLE = ":default:"

#: What the preparation did in this process (for tests): "idle", "loaded" or "load failed: ...".
STATE = "idle"
#: The fork server's process id, set in the server (and so known to every worker forked from it).
SERVER_PID: int | None = None
#: prctl option: the signal this process gets when its parent exits (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def bind_worker_to_server() -> None:
    """In a worker forked from the fork server (Linux): die with the server, and let it die with the driver.

    Two links make a killed driver take its server and workers with it:

    - the server exits when every holder of its "alive" pipe is gone. multiprocessing hands that
      pipe to each worker too (so that a worker could start processes of its own), so a worker
      alive kept the server alive, and the server kept the worker alive: a driver killed outright
      left both running for ever (a worker waits on a queue it holds both ends of). The worker
      closes its copy, leaving the driver the only holder;
    - the kernel kills the worker (SIGKILL) when the server exits (``PR_SET_PDEATHSIG``). A server
      already gone before that call is caught by comparing the parent with :data:`SERVER_PID`.

    Elsewhere (no fork server: spawn) this does nothing.
    """
    if not sys.platform.startswith("linux") or SERVER_PID is None or os.getpid() == SERVER_PID:
        return
    from multiprocessing import forkserver

    # The per-process ForkServer singleton; its alive fd is set in each child (_serve_one).
    server = getattr(forkserver, "_forkserver", None)
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None:
        try:
            os.close(alive_fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None  # type: ignore[union-attr]
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != SERVER_PID:
        os._exit(1)  # the server (and so the driver) is already gone


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
    SERVER_PID = os.getpid()
    STATE = _prepare(_bundle)
    gc.freeze()
