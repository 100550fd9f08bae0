#!/usr/bin/env python3
"""Does the second ultrasound view of a lesion add information? BUS-BRA two-view experiment.

BUS-BRA gives 811 of its 1064 patients two images of the same lesion (``bus_NNNN-l`` and
``bus_NNNN-r``). On the patients with both views, official folds 1-4 train and fold 5 is scored
once:

- the two-view model: a multi-input bundle (``configs/busbra_two_view.yaml``: inputs ``US_l`` and
  ``US_r``, one Rad signature per view, stacking across the views on out-of-fold scores), given
  both views;
- each single view: the same bundle given one view (its ``US_l``-only or ``US_r``-only model, the
  view's own Rad signature);
- a single-view model trained on both views pooled (every training image one case, patient-level
  folds), applied to each view, and averaged over the two views.

Reported on the same fold-5 lesions: AUC with DeLong 95 % CI, and paired DeLong tests of the
two-view model against each comparator. Writes ``OUT/two_view.json`` and the markdown table.

Radiomics reuse the trainer's cache ``out/bundle.work/cache`` when it holds the same parameter
file (keys are the image's and mask's bytes, so the reuse is exact); otherwise they are extracted.

Usage: python scripts/experiments/two_view.py [--out out/exp/two_view] [--data ../shared/data]
    [--fusion stacking|ensemble|early]

``--fusion``: a secondary analysis with another fusion across the views than the config's
stacking (the pooled single-view model of the primary run is reused).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "busbra_two_view.yaml"
TRAINER_CACHE = ROOT / "out" / "bundle.work" / "cache"
TEST_FOLD = "5"


def log(line: str) -> None:
    """One progress line with a time stamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def patients(data: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Patient -> view letter -> row (ID, label, fold, image, mask), for the two-view patients."""
    base = data / "BUS-BRA"
    with open(base / "5-fold-cv.csv", newline="") as f:
        folds = {r["ID"]: r["kFold"] for r in csv.DictReader(f)}
    out: dict[str, dict[str, dict[str, str]]] = {}
    with open(base / "bus_data.csv", newline="") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["Case"], {})[r["ID"][-1]] = {
                "id": r["ID"],
                "label": r["Pathology"],
                "fold": folds[r["ID"]],
                "image": str((base / "Images" / f"{r['ID']}.png").resolve()),
                "mask": str((base / "Masks" / f"mask_{r['ID'][4:]}.png").resolve()),
            }
    two = {p: v for p, v in out.items() if "l" in v and "r" in v}
    for p, v in two.items():
        if v["l"]["fold"] != v["r"]["fold"] or v["l"]["label"] != v["r"]["label"]:
            raise SystemExit(f"patient {p}: the two views differ in fold or label")
    return two


def write_manifests(two: dict, out: Path) -> tuple[Path, Path, list[str]]:
    """The two-view training manifest, the pooled single-view one, and the fold-5 patients."""
    train = [p for p in sorted(two, key=int) if two[p]["l"]["fold"] != TEST_FOLD]
    test = [p for p in sorted(two, key=int) if two[p]["l"]["fold"] == TEST_FOLD]
    multi, single = out / "train_two_view.csv", out / "train_single_view.csv"
    with open(multi, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "label", "patient_id", "image:US_l", "mask:US_l", "image:US_r", "mask:US_r"])
        for p in train:
            v = two[p]
            w.writerow([f"bus_{int(p):04d}", v["l"]["label"], f"busbra-{p}", v["l"]["image"], v["l"]["mask"],
                        v["r"]["image"], v["r"]["mask"]])  # fmt: skip
    with open(single, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "image", "mask", "label", "patient_id"])
        for p in train:
            for s in "lr":
                v = two[p][s]
                w.writerow([v["id"], v["image"], v["mask"], v["label"], f"busbra-{p}"])
    return multi, single, test


def seed_caches(work: Path, params_hash: str) -> int:
    """Copy the trainer's cached radiomics of these images into each run's cache (same keys but
    the case id: the two-view runs name a case bus_NNNN, its views bus_NNNN-l / -r)."""
    source = TRAINER_CACHE / f"radiomics_{params_hash}.jsonl"
    if not source.exists():
        return 0
    targets = {
        "l": work / "two_view.work" / "inputs" / "US_l" / "cache",
        "r": work / "two_view.work" / "inputs" / "US_r" / "cache",
        "pooled": work / "single_view.work" / "cache",
    }
    lines: dict[str, list[str]] = {k: [] for k in targets}
    for line in source.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        cid, variant, digest = item["key"].split("|")
        if not cid.startswith("bus_") or variant not in ("exact", "ellipse"):
            continue
        lines["pooled"].append(line)
        view = cid[-1]
        if view in "lr":
            item["key"] = f"{cid[:-2]}|{variant}|{digest}"
            lines[view].append(json.dumps(item))
    for k, folder in targets.items():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"radiomics_{params_hash}.jsonl").write_text("\n".join(lines[k]) + "\n", encoding="utf-8")
    return len(lines["pooled"])


def fusion_config(out: Path, fusion: str) -> Path:
    """The two-view config with another fusion across the views."""
    import yaml

    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["input_fusion"] = fusion
    data["radiomics_parameters"] = str(CONFIG.parent / data["radiomics_parameters"])
    path = out / f"two_view_{fusion}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def single_view_config(out: Path) -> Path:
    """The pooled single-view model's config: the two-view config without its inputs."""
    import yaml

    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    for key in ("inputs", "input_fusion", "input_stacking_inputs"):
        data.pop(key, None)
    data["bundle_id"] = "busbra-single-view"
    data["title"] = "One ultrasound view of a breast lesion (radiomics, both views pooled)"
    data["split"] = {**data.get("split", {}), "test_fraction": 0.0}
    data["radiomics_parameters"] = str(CONFIG.parent / data["radiomics_parameters"])
    path = out / "single_view.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def score_fold5(
    two: dict, test: list[str], multi_bundle: Path, single_bundle: Path
) -> tuple[dict[str, np.ndarray], list[tuple[str, np.ndarray]]]:
    """Every compared score of each fold-5 patient, and (view id, lesion slice) of every image
    scored (the held-out ledger's test-set digest)."""
    from DLRPredictorLib.inference.multi_input_predictor import load_multi_input_predictor
    from DLRPredictorLib.inference.predictor import load_predictor
    from DLRPredictorLib.inputs import images, lesion

    multi = load_multi_input_predictor(multi_bundle)
    single = load_predictor(single_bundle)
    scores: dict[str, list[float]] = {k: [] for k in ("y", "two_view", "view_l", "view_r", "pooled_l",
                                                       "pooled_r", "pooled_mean")}  # fmt: skip
    used: set[str] = set()
    slices: list[tuple[str, np.ndarray]] = []
    for k, p in enumerate(test):
        arrays = {}
        for s, name in (("l", "US_l"), ("r", "US_r")):
            v = two[p][s]
            volume = images.read_image(v["image"])
            arrays[name] = (volume, lesion.read_mask(v["mask"], volume))
        both = multi.predict(arrays, heatmap=False, case=p)
        for s, name in (("l", "US_l"), ("r", "US_r")):
            lesion_slice = both.per_input[name].lesion
            assert lesion_slice is not None
            slices.append((two[p][s]["id"], lesion_slice.image))
        only_l = multi.combine({"US_l": both.per_input["US_l"]})
        only_r = multi.combine({"US_r": both.per_input["US_r"]})
        used.update({both.model_used, only_l.model_used, only_r.model_used})
        pl = single.predict(*arrays["US_l"], heatmap=False).probability
        pr = single.predict(*arrays["US_r"], heatmap=False).probability
        scores["y"].append(float(two[p]["l"]["label"] == "malignant"))
        scores["two_view"].append(both.probability)
        scores["view_l"].append(only_l.probability)
        scores["view_r"].append(only_r.probability)
        scores["pooled_l"].append(pl)
        scores["pooled_r"].append(pr)
        scores["pooled_mean"].append((pl + pr) / 2)
        if (k + 1) % 40 == 0:
            log(f"fold 5: {k + 1}/{len(test)} patients")
    log("models used: " + "; ".join(sorted(used)))
    return {k: np.asarray(v) for k, v in scores.items()}, slices


LABELS = {
    "two_view": "Two-view model (stacking of both views)",
    "view_l": "View l alone (the bundle's US_l model)",
    "view_r": "View r alone (the bundle's US_r model)",
    "pooled_l": "Pooled single-view model on view l",
    "pooled_r": "Pooled single-view model on view r",
    "pooled_mean": "Pooled single-view model, mean of both views",
}


def report(scores: dict[str, np.ndarray]) -> dict:
    """AUCs with DeLong CI and paired DeLong tests of the two-view model against each other score."""
    from DLRPredictorLib.evaluation.auc import auc_delong, delong_test

    y = scores["y"].astype(int)
    out = {"n": len(y), "n_malignant": int(y.sum()), "auc": {}, "vs_two_view": {}}
    for key in LABELS:
        a = auc_delong(y, scores[key])
        out["auc"][key] = {"auc": a.auc, "ci": [a.ci_low, a.ci_high]}
        if key != "two_view":
            t = delong_test(y, scores["two_view"], scores[key])
            out["vs_two_view"][key] = {"diff": t.diff, "p": t.p}
    t = delong_test(y, scores["pooled_mean"], scores["pooled_l"])
    out["pooled_mean_vs_pooled_l"] = {"diff": t.diff, "p": t.p}
    t = delong_test(y, scores["pooled_mean"], scores["pooled_r"])
    out["pooled_mean_vs_pooled_r"] = {"diff": t.diff, "p": t.p}
    return out


def record(ledger: Path, bundle: Path, slices: list[tuple[str, np.ndarray]], res: dict) -> dict:
    """Append this scoring of fold 5 to the held-out ledger (training/ledger.py): the two-view
    bundle's content digest as the configuration, the scored images as the test set; no case or
    patient id is written. Returns the entry as written."""
    from DLRPredictorLib.bundle.multi_input import load_multi_input_bundle
    from DLRPredictorLib.training.ledger import append_entry, test_set_digest

    verified = load_multi_input_bundle(bundle)
    entry = {
        "config_digest": verified.digest,
        "test_set_digest": test_set_digest(slices),
        "bundle_id": verified.id,
        "n_test": res["n"],
        "source": "scripts/experiments/two_view.py",
        "aucs": {"fold5": {k: v["auc"] for k, v in res["auc"].items()}},
    }
    written = append_entry(ledger, entry)
    log(f"held-out ledger {ledger}: entry {written['repeat']} of this configuration on this test set")
    return written


def markdown(res: dict) -> str:
    """The results table for docs/EXPERIMENTS.md."""
    lines = [
        f"Fold 5, {res['n']} patients with both views ({res['n_malignant']} malignant):",
        "",
        "| Score | AUC (95 % CI) | Two-view minus this | Paired DeLong p |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in LABELS.items():
        a = res["auc"][key]
        auc = f"{a['auc']:.3f} ({a['ci'][0]:.3f}-{a['ci'][1]:.3f})"
        if key == "two_view":
            lines.append(f"| {label} | {auc} | | |")
        else:
            t = res["vs_two_view"][key]
            lines.append(f"| {label} | {auc} | {t['diff']:+.3f} | {t['p']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    """Manifests, the two trainings, the fold-5 scores, the tests."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "exp" / "two_view")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument(
        "--ledger",
        type=Path,
        default=ROOT / "out" / "exp" / "two_view" / "heldout_ledger.jsonl",
        help="held-out ledger of fold 5: every scoring is appended (default: in the output folder)",
    )
    ap.add_argument(
        "--fusion",
        choices=("stacking", "ensemble", "early"),
        default=None,
        help="fusion across the views instead of the config's (a secondary analysis: writes *_FUSION files)",
    )
    args = ap.parse_args()

    from DLRPredictorLib.features import radiomics as rf
    from DLRPredictorLib.training.multi_input_train import train_multi_input
    from DLRPredictorLib.training.trainer import train_from_manifest

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    two = patients(args.data)
    multi_csv, single_csv, test = write_manifests(two, out)
    log(f"{len(two)} two-view patients; {len(two) - len(test)} train (folds 1-4), {len(test)} fold 5")
    params = rf.load_parameters(CONFIG.parent / "breastus_radiomics.yaml")
    seeded = seed_caches(out, rf.parameters_hash(params)[:16])
    log(f"radiomics cache: {seeded} cached extractions reused")
    config, tag = CONFIG, ""
    if args.fusion is not None:
        config, tag = fusion_config(out, args.fusion), f"_{args.fusion}"
        LABELS["two_view"] = f"Two-view model ({args.fusion} fusion of both views)"
    start = time.time()
    multi_bundle = train_multi_input(
        multi_csv, out / f"two_view{tag}", config, work_dir=out / "two_view.work", log=log
    )
    t_multi = time.time() - start
    start = time.time()
    single_bundle = out / "single_view"
    if not (tag and (single_bundle / "manifest.json").is_file()):  # a secondary run reuses it
        single_bundle = train_from_manifest(
            single_csv, single_bundle, single_view_config(out), work_dir=out / "single_view.work", log=log
        )
    t_single = time.time() - start
    scores, slices = score_fold5(two, test, multi_bundle, single_bundle)
    np.savez(out / f"fold5_scores{tag}.npz", **scores)
    res = report(scores)
    res["ledger"] = record(args.ledger, multi_bundle, slices, res)
    res["train_seconds"] = {"two_view": round(t_multi, 1), "single_view": round(t_single, 1)}
    res["model_card"] = (multi_bundle / "model_card.md").read_text(encoding="utf-8")
    (out / f"two_view{tag}.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    table = markdown(res)
    (out / f"two_view{tag}.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(res["model_card"])


if __name__ == "__main__":
    main()
