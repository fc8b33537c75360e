"""How much the words of features version 6 add, and how much choosing them on every file flatters a CV.

``scripts/string_words.py`` ranks the words of a cache's files by chi-squared on all of them; a
cross-validation on the same files then scores each fold with words chosen partly on its test files. This
measures both ways on the default's recipe (LightGBM, extremely randomised trees, no class weights, the
source-disjoint folds of ``malvision train-detector --protocols source --seed S``): the version 5 vector
alone, with the ``--top`` words chosen on each fold's training files only (honest), and with those
chosen on every file (what the shipped vector does). A word's column is its presence.

    .venv/bin/python scripts/string_words.py ~/.cache/malvision/caches/pe-features-v16 --matrix /tmp/words
    .venv/bin/python benchmarks/string_words.py ~/.cache/malvision/caches/pe-features-v16 /tmp/words \\
        --top 400 --seeds 0 1 2

Files a scan calls unknown count as missed, as on the cards. One line of JSON per seed and way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def chosen(m: object, y: np.ndarray, rows: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` columns of ``m`` by chi-squared between presence and label on ``rows``."""
    from sklearn.feature_selection import chi2

    return np.argsort(-np.nan_to_num(chi2(m[rows], y[rows])[0]), kind="stable")[:top]


def run(x: np.ndarray, m: object, y: np.ndarray, splits: list, way: str, top: int, seed: int) -> np.ndarray:
    """Out-of-fold malware log-odds of the default's recipe on ``x`` and the words ``way`` chooses."""
    from malvision.models.trees import LightGBMTrees

    everywhere = chosen(m, y, np.arange(len(y)), top) if way == "all" else None
    oof = np.full(len(y), np.nan)
    for k, (tr, te) in enumerate(splits):
        xs = x
        if way != "none":
            cols = everywhere if everywhere is not None else chosen(m, y, tr, top)
            xs = np.hstack([x, m[:, cols].toarray().astype(np.float32)])
        clf = LightGBMTrees(in_kind="features", n_classes=2, n_features=xs.shape[1], extra_trees=True)
        booster = clf.classifier(seed).fit(xs[tr], y[tr]).booster_
        oof[te] = booster.predict(xs[te], raw_score=True)
        print(f"  {way} fold {k + 1}/{len(splits)}", file=sys.stderr, flush=True)
    return oof


def figures(y: np.ndarray, oof: np.ndarray, unknown: list[str | None]) -> dict[str, float]:
    """The card's figures of out-of-fold log-odds, counted as a scan counts them (``scanned_metrics``)."""
    from malvision.calibration import sigmoid
    from malvision.evaluate.detection import as_scanned, scanned_metrics

    m = scanned_metrics(y, as_scanned(sigmoid(oof), unknown))
    return {
        "roc_auc": round(m["roc_auc"], 4),
        "tpr_at_0.001": round(m["tpr_at_0.1pct_fpr"], 4),
        "tpr_at_0.01": round(m["tpr_at_1pct_fpr"], 4),
    }


def main() -> None:
    import scipy.sparse as sp

    from malvision.data.cache import CachedDataset
    from malvision.data.splits import source_kfold
    from malvision.errors import MalvisionError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("cache", type=Path, help="a features cache of version 5 (the vector without words)")
    ap.add_argument("words", type=Path, help="string_words.py --matrix's output, without suffix")
    ap.add_argument("--top", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--ways", nargs="+", default=["none", "fold", "all"], choices=["none", "fold", "all"])
    args = ap.parse_args()
    try:
        ds = CachedDataset(args.cache)
    except MalvisionError as e:
        sys.exit(f"error: {e}")
    try:
        m = sp.load_npz(args.words.with_suffix(".npz")).tocsc()
    except (OSError, ValueError) as e:
        sys.exit(f"error: {args.words}: not string_words.py --matrix's output ({e})")
    if m.shape[0] != len(ds):
        raise SystemExit(f"error: {args.words} has {m.shape[0]} rows for {len(ds)} files in {args.cache}")
    x = np.stack([ds[i][0] for i in range(len(ds))]).astype(np.float32)
    y = (np.asarray(ds.labels) == list(ds.classes).index("malware")).astype(int)
    unknown = [r.unknown for r in ds.records]
    for seed in args.seeds:
        splits, _ = source_kfold(y == 1, ds.groups, ds.collections, random_state=seed)
        for way in args.ways:
            t0 = time.perf_counter()
            oof = run(x, m, y, splits, way, args.top, seed)
            row = {"seed": seed, "words": way, "top": args.top, **figures(y, oof, unknown)}
            print(json.dumps(row | {"seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
