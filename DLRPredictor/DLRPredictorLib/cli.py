"""The `dlrpredictor` command line (also `python -m DLRPredictorLib`).

Parsing only: each sub-command forwards to the module that does the work, imported lazily so
that `--help` answers without loading torch, pyradiomics or MRML. Expected errors (DLRError)
print one line on stderr and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .base.errors import DLRError
from .base.interrupts import Interrupted, terminate_as_interrupt

EPILOG = "Documentation: README.md of the DLRPredictor extension."
SCHEDULER_HELP = (
    "run the cases on a Dask cluster: its scheduler address (tcp://host:8786) or local:N for N "
    "local worker processes (default: $DLR_SCHEDULER; without either, this machine's workers)"
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one stderr line (the CLI contract), exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem and where help is, then exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_bundle_arguments(parser: argparse.ArgumentParser, *, jobs: bool) -> None:
    """--bundle and --trusted-keys (and --jobs) as every command that predicts takes them."""
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: bundled)")
    if jobs:
        parser.add_argument(
            "--jobs",
            type=int,
            default=None,
            help="worker processes, one core each (default: one per core, at most 4)",
        )
    parser.add_argument(
        "--trusted-keys",
        type=Path,
        default=None,
        help="folder of trusted public keys, *.pem (default: $DLR_TRUSTED_KEYS)",
    )


def _add_statistics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-column",
        default=None,
        help="patient id column (e.g. patient_id): clustered AUC CIs/tests, bootstrap by patient",
    )
    parser.add_argument(
        "--reader-column", default=None, help="BI-RADS column (e.g. birads): compare the scores with it"
    )
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=20240611, help="bootstrap seed (default 20240611)")


def _parser() -> argparse.ArgumentParser:
    # Sub-command parsers are made by add_subparsers with the same class, so they inherit error().
    parser = _Parser(
        prog="dlrpredictor",
        description="Deep-learning radiomics (DLR) of breast ultrasound: predict, train, evaluate, report.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="predict every case of a manifest CSV into a results CSV")
    p.add_argument("manifest", type=Path, help="CSV with case_id, image, mask (and optional columns)")
    p.add_argument("--out", type=Path, required=True, help="results CSV (resumed if it exists)")
    _add_bundle_arguments(p, jobs=True)
    p.add_argument("--scenes", type=Path, default=None, help="folder for one .mrb scene per case")
    p.add_argument("--stability", action="store_true", help="re-predict on eroded/dilated contours")
    from .deep.heatmap import DEFAULT_HEATMAP, HEATMAP_KINDS

    p.add_argument(
        "--heatmap",
        choices=HEATMAP_KINDS,
        default=None,
        help=f"with --scenes: the score each scene's heatmap explains (default {DEFAULT_HEATMAP})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--scheduler", default=None, help=SCHEDULER_HELP)

    t = sub.add_parser("train", help="train a model bundle from a labelled manifest")
    t.add_argument("manifest", type=Path, help="CSV with case_id, image, mask, label (patient_id, clinical)")
    t.add_argument("--out", type=Path, required=True, help="bundle folder to create")
    t.add_argument("--config", type=Path, default=None, help="training YAML (defaults otherwise)")
    t.add_argument("--work", type=Path, default=None, help="folder for caches and checkpoints (resumable)")
    t.add_argument("--sign-key", type=Path, default=None, help="Ed25519 private key (PEM) to sign the bundle")
    t.add_argument("--scheduler", default=None, help=SCHEDULER_HELP)
    t.add_argument(
        "--ledger",
        type=Path,
        default=None,
        help="held-out ledger (JSON lines) every run on this test set appends to "
        "(default WORK/heldout_ledger.jsonl)",
    )

    s = sub.add_parser("sign", help="sign a model bundle (writes its signature.json)")
    s.add_argument("bundle", type=Path, help="model bundle folder")
    s.add_argument("--key", type=Path, required=True, help="Ed25519 private key, PEM (openssl genpkey)")

    e = sub.add_parser("evaluate", help="predict a labelled manifest and write an evaluation report")
    e.add_argument("manifest", type=Path, help="CSV with case_id, image, mask, label")
    e.add_argument("--report", type=Path, required=True, help="report folder to create")
    _add_statistics_arguments(e)
    e.add_argument("--group-column", default=None, help="manifest column (e.g. device): AUC per value")
    e.add_argument(
        "--ledger",
        type=Path,
        default=None,
        help="held-out ledger (JSON lines) to record this scoring of the cohort in (a bundle's own "
        "test set is recorded without it, beside the report)",
    )
    _add_bundle_arguments(e, jobs=True)

    r = sub.add_parser("report", help="statistics report from any predictions CSV")
    r.add_argument("predictions", type=Path, help="CSV with a label column and score columns")
    r.add_argument(
        "--label",
        default=None,
        help="label column (0/1 or the positive class name; with --classes: class names, default label)",
    )
    r.add_argument("--scores", default=None, help="comma-separated score columns (probabilities)")
    r.add_argument(
        "--classes",
        default=None,
        help="K-class endpoint: the classes in order, e.g. fibroadenoma,idc,cyst,other (the CSV has "
        "probability:<class> columns and class names as labels)",
    )
    r.add_argument("--report", type=Path, required=True, help="report folder to create")
    r.add_argument("--positive", default=None, help="label value meaning positive (default 1)")
    r.add_argument(
        "--negative", default=None, help="label value meaning negative (default: the one other value)"
    )
    r.add_argument("--cutoffs", default=None, help="frozen cutoffs, e.g. probability=0.42,rad=0.5")
    _add_statistics_arguments(r)
    r.add_argument("--clinical-column", default=None, help="score column of a clinical-only model")
    r.add_argument("--group-column", default=None, help="column (e.g. device, site): AUC per value")

    d = sub.add_parser("demo", help="run the main job on the embedded synthetic sample")
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")

    d.add_argument(
        "--heatmap",
        choices=HEATMAP_KINDS,
        default=DEFAULT_HEATMAP,
        help="the score the heatmap explains: the DL signature (default) or the CNN's own head",
    )
    _add_bundle_arguments(d, jobs=False)
    return parser


def _scheduler_given(option: str | None) -> bool:
    from .cohort.dask_runner import scheduler_option

    return scheduler_option(option) is not None


def _parse_cutoffs(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise DLRError(f"--cutoffs item '{item}' must look like NAME=0.5") from exc
    return out


def _train_on_scheduler(args: argparse.Namespace) -> int:
    """``train`` with its radiomics, crops and folds on the Dask cluster of ``--scheduler``."""
    from .base.executor import mapping
    from .cohort import dask_runner

    scheduler = str(dask_runner.scheduler_option(args.scheduler))
    dask_runner.local_workers(scheduler)  # a malformed local:N is refused before any work
    with dask_runner.connect(scheduler) as client, mapping(dask_runner.cluster_map(client)):
        args.scheduler = ""  # connected: the command itself runs as without a scheduler
        return _run(args)


def _refuse_options(given: dict[str, object], why: str) -> None:
    """One line naming the options given that this run does not offer (InputError, exit 2)."""
    from .base.errors import InputError

    refused = [option for option, value in given.items() if value]
    if refused:
        raise InputError(f"{', '.join(refused)}: {why}")


def _multi_input_hint(manifest: Path, exc: Exception) -> Exception:
    """A one-input run's manifest error, saying so when the manifest names several inputs."""
    from .base.errors import DLRError, InputError
    from .inputs.multi_input import is_multi_input_manifest

    try:
        multi = is_multi_input_manifest(manifest)
    except DLRError:
        multi = False
    if not multi:
        return exc
    return InputError(
        f"manifest '{manifest.name}' names several inputs (image:NAME columns); predict it with a "
        "multi-input bundle (--bundle DIR holding multi_input.json)"
    )


def _run(args: argparse.Namespace) -> int:
    if args.command == "train" and _scheduler_given(args.scheduler):
        return _train_on_scheduler(args)
    if getattr(args, "trusted_keys", None) is not None:
        import os

        from .bundle.trust import TRUSTED_KEYS_ENV

        os.environ[TRUSTED_KEYS_ENV] = str(args.trusted_keys)  # the batch workers inherit it
    if args.command == "predict":
        from .bundle.multi_input import is_multi_input_bundle

        if is_multi_input_bundle(args.bundle):  # a multi-input manifest, one case per row
            from .cohort.multi_input_batch import predict_multi_input_cohort

            _refuse_options(
                {"--stability": args.stability, "--scheduler": args.scheduler, "--jobs": args.jobs},
                "not offered with a multi-input bundle (its cases run one after the other in this "
                "process); leave the option out",
            )

            multi = predict_multi_input_cohort(
                args.manifest,
                args.out,
                bundle_path=args.bundle,
                scenes_dir=args.scenes,
                heatmap_kind=args.heatmap,
            )
            print(multi.line())
            return 0 if multi.n_error == 0 else 1
        from .base.errors import ManifestError
        from .cohort import batch
        from .cohort.dask_runner import scheduler_option

        try:
            summary = batch.predict_cohort(
                args.manifest,
                args.out,
                bundle_path=args.bundle,
                jobs=args.jobs,
                scenes_dir=args.scenes,
                stability=args.stability,
                show_progress=not args.no_progress,
                scheduler=scheduler_option(args.scheduler),
                heatmap_kind=args.heatmap,
            )
        except ManifestError as exc:
            raise _multi_input_hint(args.manifest, exc) from exc
        print(summary.line())
        return 0 if summary.n_error == 0 else 1
    if args.command == "train":
        from .training.multi_input_config import is_multi_input_config

        if is_multi_input_config(args.config):  # inputs: [...] declares a multi-input bundle
            from .bundle.multi_input import load_multi_input_bundle, sign_multi_input_bundle
            from .training.multi_input_train import train_multi_input

            _refuse_options(
                {"--ledger": args.ledger, "--scheduler": args.scheduler},
                "not offered when training a multi-input bundle; leave it out",
            )
            if args.sign_key is not None:
                from .bundle.sign import check_signing_key

                check_signing_key(args.sign_key)  # a bad key is refused now, not after the training
            path = train_multi_input(args.manifest, args.out, args.config, work_dir=args.work)
            if args.sign_key is not None:
                sign_multi_input_bundle(path, args.sign_key)
            multi_bundle = load_multi_input_bundle(path)
            print(f"multi-input bundle written to {path}; content digest {multi_bundle.digest}", end="")
            print(f" ({multi_bundle.trust})")
            return 0
        from .training import trainer as training

        path = training.train_from_manifest(
            args.manifest,
            args.out,
            args.config,
            work_dir=args.work,
            sign_key=args.sign_key,
            ledger=args.ledger,
        )
        from .bundle.verify import load_bundle

        # The model card cannot hold the digest (the digest covers the card): it is given here.
        written = load_bundle(path)
        print(f"bundle written to {path}; content digest {written.digest} ({written.trust})")
        return 0
    if args.command == "sign":
        from .bundle.multi_input import is_multi_input_bundle, sign_multi_input_bundle
        from .bundle.sign import sign_bundle

        if is_multi_input_bundle(args.bundle):
            multi_signed = sign_multi_input_bundle(args.bundle, args.key)
            print(f"multi-input bundle {multi_signed.path} {multi_signed.trust}", end="")
            print(f"; content digest {multi_signed.digest}")
            return 0

        signed = sign_bundle(args.bundle, args.key)
        print(f"bundle {signed.path} {signed.trust}; content digest {signed.digest}")
        return 0
    if args.command == "evaluate":
        from .bundle.multi_input import is_multi_input_bundle

        if is_multi_input_bundle(args.bundle):  # its probability, each row at its model's cutoff
            from .cohort.multi_input_batch import evaluate_multi_input_cohort

            _refuse_options(
                {
                    "--jobs": args.jobs,
                    "--group-column": args.group_column,
                    "--cluster-column": args.cluster_column,
                    "--reader-column": args.reader_column,
                    "--ledger": args.ledger,
                },
                "not offered with a multi-input bundle yet; leave it out",
            )
            report = evaluate_multi_input_cohort(args.manifest, args.report, bundle_path=args.bundle)
            print(f"report written to {report}")
            return 0
        from .cohort import batch
        from .evaluation.bootstrap import BootstrapSettings

        path = batch.evaluate_cohort(
            args.manifest,
            args.report,
            bundle_path=args.bundle,
            jobs=args.jobs,
            group_column=args.group_column,
            cluster_column=args.cluster_column,
            reader_column=args.reader_column,
            bootstrap=BootstrapSettings(n_resamples=args.bootstrap, seed=args.seed),
            ledger=args.ledger,
        )
        print(f"report written to {path}")
        return 0
    if args.command == "report" and args.classes is not None:
        from .evaluation.multiclass_csv import report_from_multiclass_csv

        path = report_from_multiclass_csv(
            args.predictions,
            [c for c in args.classes.split(",") if c.strip()],
            args.report,
            args.label or "label",
            cutoffs=_parse_cutoffs(args.cutoffs),
            cluster_column=args.cluster_column,
        )
        print(f"report written to {path / 'index.html'}")
        return 0
    if args.command == "report":
        from .evaluation import report_csv

        if args.label is None or args.scores is None:
            raise DLRError("report: give --label and --scores (or --classes for a K-class endpoint).")
        from .evaluation.bootstrap import BootstrapSettings

        scores = [s.strip() for s in args.scores.split(",") if s.strip()]
        path = report_csv.report_from_predictions_csv(
            args.predictions,
            args.label,
            scores,
            args.report,
            positive_label=args.positive,
            negative_label=args.negative,
            cluster_column=args.cluster_column,
            reader_column=args.reader_column,
            clinical_column=args.clinical_column,
            bootstrap=BootstrapSettings(n_resamples=args.bootstrap, seed=args.seed),
            cutoffs=_parse_cutoffs(args.cutoffs),
            group_column=args.group_column,
        )
        print(f"report written to {path / 'index.html'}")
        return 0
    if args.command == "demo":
        from . import demo

        print(demo.run_demo(args.out, bundle_path=args.bundle, heatmap_kind=args.heatmap))
        return 0
    raise AssertionError(args.command)  # argparse rejects unknown commands first


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dlrpredictor` console script.

    Returns:
        0 on success, 1 when a batch finished with failed cases, 2 on an expected error,
        130 after Ctrl-C and 143 after SIGTERM (128 + the signal, as a shell reports it).
    """
    args = _parser().parse_args(argv)
    try:
        # SIGTERM (kill) ends a command like Ctrl-C: workers stopped, journal kept, one line.
        with terminate_as_interrupt():
            return _run(args)
    except DLRError as exc:
        print(f"dlrpredictor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        progress = exc.progress() if isinstance(exc, Interrupted) else ""
        what = f"interrupted: {progress}" if progress else "interrupted"
        print(f"dlrpredictor {args.command}: {what}; rerun the same command to resume", file=sys.stderr)
        return exc.exit_status if isinstance(exc, Interrupted) else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
