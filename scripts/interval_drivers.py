"""Which benign projects a detector's figure at one FPR turns on, as Markdown.

    .venv/bin/python scripts/interval_drivers.py ~/.cache/malvision/runs/pe-detector-gbt ~/.cache/malvision/caches/pe-features-wide [FPR]

Reads a `malvision train-detector` run's out-of-fold scores and the groups of its cache, runs the group
bootstrap behind the card's 95% intervals (`evaluate.metrics.bootstrap_tpr`, same seed), and splits its
replicates by how often each benign project that holds one of the top benign scores was drawn. FPR
defaults to the card's target.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from detector_run import load_run

from malvision.data.splits import group_keys
from malvision.evaluate.metrics import bootstrap_tpr

TOP = 8  # benign files whose projects are shown


def main(run: Path, cache: Path, fpr: float | None) -> None:
    card, oof, ds = load_run(run, cache)
    fpr = card["target_fpr"] if fpr is None else fpr
    group_of = dict(zip(ds.ids, group_keys(ds.groups, len(ds)), strict=True))
    y, score = np.asarray(oof["y"]), np.asarray(oof["score"])
    groups = np.array([group_of[i] for i in oof["ids"]])
    seed = card["train_config"]["seed"]
    rates, draws = bootstrap_tpr(y, score, groups, fpr, seed=seed)
    lo, hi = np.percentile(rates, [2.5, 97.5])
    benign = np.flatnonzero(y == 0)
    top = benign[np.argsort(-score[benign], kind="stable")[:TOP]]
    print(f"# {card['architecture']} detector: what its detection rate at {fpr:g} FPR turns on\n")
    print(
        f"Run `{run.name}`, out-of-fold scores; {len(rates)} group-bootstrap replicates (seed {seed}) redraw "
        f"whole malware families and benign projects. Made by `scripts/interval_drivers.py`.\n"
    )
    print(
        f"- Detection rate: median {np.median(rates):.3f}, 95% interval {lo:.3f} to {hi:.3f}; "
        f"{(rates == 0).mean():.1%} of the replicates detect nothing."
    )
    print(
        f"- The top {TOP} benign scores: "
        + ", ".join(f"{score[i]:.3f} ({groups[i]})" for i in top)
        + f". {(score[y == 1] > score[top[0]]).sum()} malware files score above the highest benign one.\n"
    )
    print("| benign project | times drawn | share of replicates | median detection rate |")
    print("|---|---|---|---|")
    for g in dict.fromkeys(groups[i] for i in top):
        n = draws[g]
        for k in range(4):
            sel = n == k if k < 3 else n >= k
            if sel.any():
                times = f"{k}" if k < 3 else f"{k} or more"
                print(f"| {g} | {times} | {sel.mean():.1%} | {np.median(rates[sel]):.3f} |")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2].strip())
    try:
        at = float(sys.argv[3]) if len(sys.argv) == 4 else None
    except ValueError:
        sys.exit(f"error: FPR must be a number, got {sys.argv[3]!r}")
    main(Path(sys.argv[1]).expanduser(), Path(sys.argv[2]).expanduser(), at)
