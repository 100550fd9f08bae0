"""The worker side of a cohort run on Dask: the shipped bundle, loaded once, and the case task.

Imported only when a scheduler is given (it imports ``distributed``). The client verifies the
bundle once and packs its verified bytes into a :class:`BundleShipment`; :class:`BundlePlugin`
carries it to every worker of the cluster, once (a worker that joins later, or restarts after a
crash, gets it from the scheduler too). On the worker the files are written to the worker's own
folder and verified again in full, pinned to the client's content digest
(``bundle.verify.load_bundle(expected_digest=...)``): a worker never predicts with other bytes
than those the client verified. The loaded predictor stays in this process
(:data:`_PREDICTORS`), so each case task only names the bundle by its digest.

A case task (:func:`predict_cases`) returns the results rows of its cases: nothing larger than
a row comes back. Images are read where the worker runs (a shared file system).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..base.errors import BundleError
from ..bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, VerifiedBundle
from ..deep.heatmap import DEFAULT_HEATMAP
from .rows import predict_cohort_row, safe_row

#: Loaded bundles of this worker process, by content digest.
_PREDICTORS: dict[str, Any] = {}


@dataclass(frozen=True)
class BundleShipment:
    """A verified bundle as bytes: what the client sends to each worker once.

    Attributes:
        files: every file of the bundle folder (manifest.json, the listed files, signature.json).
        digest: the content digest the client verified; the worker's copy must have it.
        trust: the client's trust verdict (pinned, signed, unsigned), kept for the rows' warnings.
        trust_warnings: the client's trust warnings (they go into each row's ``warnings``).
    """

    files: dict[str, bytes]
    digest: str
    trust: str
    trust_warnings: tuple[str, ...]

    @classmethod
    def of(cls, bundle: VerifiedBundle) -> BundleShipment:
        """The shipment of a bundle verified on the client: its verified bytes, never re-read."""
        files = {name: bundle.read_bytes(name) for name in bundle.files}
        files[MANIFEST_NAME] = (bundle.path / MANIFEST_NAME).read_bytes()
        signature = bundle.path / SIGNATURE_NAME
        if signature.is_file():
            files[SIGNATURE_NAME] = signature.read_bytes()
        return cls(files, bundle.digest, bundle.trust, tuple(bundle.trust_warnings))

    def size(self) -> int:
        """Bytes shipped to each worker."""
        return sum(len(b) for b in self.files.values())


def load_shipment(shipment: BundleShipment, folder: Path) -> Any:
    """Write a shipment into ``folder`` and load it, verified and pinned to the client's digest.

    Returns:
        The worker's Predictor (one thread, no second branch thread: one case per worker thread).

    Raises:
        BundleError: the bytes are not the bundle the client verified.
    """
    from ..bundle.verify import load_bundle
    from ..inference import predictor

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, data in shipment.files.items():
        (folder / name).write_bytes(data)
    verified = load_bundle(folder, expected_digest=shipment.digest)
    # The trust verdict is the client's (it holds the trusted keys; the digest pins the content):
    # the rows then carry the same warnings as a local run's.
    files = {name: verified.read_bytes(name) for name in verified.files}
    same = VerifiedBundle(
        verified.path,
        verified.manifest,
        files,
        list(verified.warnings),
        digest=verified.digest,
        trust=shipment.trust,
        trust_warnings=shipment.trust_warnings,
    )
    predictor.set_threads(1)
    pred = predictor.Predictor(same)
    pred.concurrent_branches = False
    pred.deep_model()  # the network is built once here, not inside the first case
    return pred


class BundlePlugin(WorkerPlugin):
    """Loads a shipped bundle on each worker once, at registration or when the worker starts."""

    def __init__(self, shipment: BundleShipment) -> None:
        """Carry ``shipment`` (pickled once to the scheduler, which hands it to each worker)."""
        self.shipment = shipment
        self.name = f"dlrpredictor-bundle-{shipment.digest[:16]}"

    def setup(self, worker: Any) -> None:
        """Load the bundle into this worker process (verified, pinned to the client's digest).

        Also stops the worker's statistical profiler: it samples the running task's stack every
        10 ms on the worker's event loop, which took about 15 % of a case's CPU time
        (docs/PERFORMANCE.md); its only use is the dashboard's profile page.
        """
        for name in ("profile", "profile-cycle"):
            callback = worker.periodic_callbacks.pop(name, None)
            if callback is not None:
                callback.stop()
        digest = self.shipment.digest
        if digest not in _PREDICTORS:
            folder = Path(worker.local_directory) / f"dlrpredictor-bundle-{digest[:16]}"
            _PREDICTORS[digest] = load_shipment(self.shipment, folder)


def predict_cases(
    jobs: list[dict[str, Any]],
    digest: str,
    stability: bool,
    scenes_dir: str | None,
    heatmap_kind: str = DEFAULT_HEATMAP,
) -> list[dict[str, Any]]:
    """Predict cases on a worker with the bundle shipped there; one results row per case.

    ``heatmap_kind`` is the score the scenes' heatmaps explain (used only with ``scenes_dir``).

    Per-case errors become error rows (``rows.safe_row``); this raises only when the bundle
    never reached this worker.
    """
    pred = _PREDICTORS.get(digest)
    if pred is None:
        raise BundleError(f"the bundle {digest[:16]} was not loaded on this worker")
    scenes = Path(scenes_dir) if scenes_dir else None
    # As in the local pool: the results rows hold no features, so without scenes only the
    # radiomics the model reads are computed (same prediction, 29 of the bundled model's 101).
    pred.model_features_only = scenes is None

    def predict_job(p: Any, job: dict[str, Any]) -> Any:
        return predict_cohort_row(p, job, stability=stability, scenes_dir=scenes, heatmap_kind=heatmap_kind)

    return [safe_row(pred, job, predict_job) for job in jobs]
