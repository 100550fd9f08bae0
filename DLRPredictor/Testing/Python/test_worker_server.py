"""The batch fork server loads the bundle once for all its workers (worker_server.py).

Each check runs in a fresh interpreter: the fork server is a per-process singleton, so only a
new process shows what a batch run's server and workers hold.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_python_probe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only")

# Asks a worker forked from the server what it inherited. The probes are evaluated by the
# builtin eval in the worker (a builtin pickles by name, so nothing from this test needs to be
# importable there).
_WORKER_VIEW = (
    "{'state': __import__('DLRPredictorLib.cohort.worker_server', fromlist=['_']).STATE, "
    "'cached': len(__import__('DLRPredictorLib.inference.predictor', fromlist=['_'])._CACHE), "
    "'deep_loaded': [p._deep is not None for p in "
    "__import__('DLRPredictorLib.inference.predictor', fromlist=['_'])._CACHE.values()], "
    "'frozen': __import__('gc').get_freeze_count(), "
    "'blas_threads': sorted({i['num_threads'] for i in __import__('threadpoolctl').threadpool_info() "
    "if i['user_api'] == 'blas'}), "
    "'torch': 'torch' in __import__('sys').modules}"
)

_PROBE = textwrap.dedent(
    f"""
    import json, os, sys
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path
    from DLRPredictorLib.cohort import pool, worker_server

    bundle = sys.argv[1]
    pool.start_worker_server(Path(bundle) if bundle else None)
    leaked = worker_server.BUNDLE_ENV in os.environ
    with ProcessPoolExecutor(1, mp_context=pool.worker_context()) as executor:
        view = executor.submit(eval, {_WORKER_VIEW!r}).result()
    view["env_leaked_in_driver"] = leaked
    view["driver_state"] = worker_server.STATE
    print(json.dumps(view))
    """
)


def test_workers_inherit_the_loaded_bundle_and_a_frozen_gc(tiny_bundle: Path) -> None:
    view = run_python_probe(_PROBE, str(tiny_bundle), timeout=240)
    assert view["state"] == "loaded"
    assert view["cached"] == 1 and view["deep_loaded"] == [True]
    assert view["frozen"] > 1000  # pyradiomics and the bundle stay out of the workers' GC
    assert view["blas_threads"] == [1]
    assert view["torch"] is False  # the network runs in numpy: no worker or server imports torch
    # The variable was set for the server's start only, and the driver itself loaded nothing.
    assert view["env_leaked_in_driver"] is False
    assert view["driver_state"] == "idle"


def test_a_bundle_that_fails_to_load_is_left_to_the_workers(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    view = run_python_probe(_PROBE, str(tmp_path), timeout=240)
    assert view["state"].startswith("load failed: BundleError")
    assert view["cached"] == 0
    assert view["frozen"] > 1000  # the server still freezes what it imported


def test_importing_the_module_elsewhere_does_nothing() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from DLRPredictorLib.cohort import worker_server
        print(json.dumps({"state": worker_server.STATE, "torch": "torch" in sys.modules}))
        """
    )
    view = run_python_probe(code, timeout=120)
    assert view == {"state": "idle", "torch": False}
