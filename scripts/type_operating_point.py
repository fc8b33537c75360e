"""A detector's card threshold by file type: whom the 0.1% false-positive rate is 0.1% of, as Markdown.

    .venv/bin/python scripts/type_operating_point.py ~/.cache/malvision/runs/v13-lgbm [OUT.md]

The card's threshold holds the false-positive rate to 0.1% over all its out-of-fold benign files, most of
which may be DLLs while most malware is programs. For each PE type (GUI, console, DLL, other; 32- and
64-bit together): the benign files it flags at the card threshold with their rate and exact 95%
(Clopper-Pearson) interval, the malware it detects, and the type's own 0.1% point (set on that type's
benign files alone) with the detection there: what the operating point is for someone who scans
only programs of that type.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import beta

from malvision.evaluate.metrics import threshold_for_fpr
from malvision.pe import type_kind

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, write_report  # noqa: E402

KINDS = ("GUI", "console", "DLL", "other")


def exact_interval(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95% interval of a rate of k in n."""
    lo = beta.ppf(0.025, k, n - k + 1) if k else 0.0
    hi = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


def main(run: Path, out: Path | None) -> None:
    try:
        card = json.loads((run / "card.json").read_text())
        oof = json.loads((run / "oof_scores.json").read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"error: {run}: {e}")
    y, score = np.asarray(oof["y"]), np.asarray(oof["score"])
    kind = np.array([type_kind(t) for t in oof["pe_type"]])
    cut, target = card["threshold"], card["target_fpr"]
    lines = [
        f"# `{run.name}`'s card threshold by file type",
        "",
        f"Made on {dt.date.today()}, by `{command_line()}`. Out-of-fold scores of the card's protocol "
        f"({oof['protocol']}); card threshold {cut:.4f} for {target:.1%} FPR over all "
        f"{int((y == 0).sum()):,} benign files.",
        "",
        f"| type | benign | flagged at the card threshold | FPR (95% exact) | malware | detected | "
        f"type's own {target:.1%} point | detected there |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in (*KINDS, "all"):
        m = np.ones(len(y), bool) if k == "all" else kind == k
        ben, mal = score[m & (y == 0)], score[m & (y == 1)]
        if not len(ben) and not len(mal):
            continue
        flagged = int((ben >= cut).sum())
        lo, hi = exact_interval(flagged, len(ben)) if len(ben) else (0.0, 1.0)
        own = threshold_for_fpr(ben, target) if len(ben) else float("nan")
        lines.append(
            f"| {k} | {len(ben):,} | {flagged} | {flagged / max(len(ben), 1):.2%} ({lo:.2%} to {hi:.2%}) | "
            f"{len(mal):,} | {(mal >= cut).mean():.1%} | {own:.4f} | "
            f"{(mal >= own).mean() if len(mal) else float('nan'):.1%} |"
        )
    lines += [
        "",
        f"A type's own {target:.1%} point allows floor({target} x its benign files) above it: on a few thousand "
        "files, two or three files set it, so it is a description of this set, not an estimate to ship.",
        "",
    ]
    text = "\n".join(lines)
    if out:
        write_report(text, out)
    else:
        print(text)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1].strip())
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
