"""Detectors on every held-out benign set at once: false positives and the ranking, as Markdown.

    .venv/bin/python scripts/heldout_pooled.py RUN... [--corpus DIR ...] [--out MD]

Scans the held-out benign corpora (by default the four no default trained on: 463 GitHub programs, the
second held-out set's 846, the sixth GitHub set's 1,333 and the registry's 697) with each run's model, and
puts those scores against the run's out-of-fold malware scores (source-disjoint). Per run: the files
flagged at the card's threshold, and the detection at the held-out files' own 1%, 0.3% and 0.1% FPR
points. One set's 0.1% point is its top file or two; pooled, the 0.3% point is set by ten files. Files a
scan calls unknown count as never flagged, on both sides; files in a run's training list are left out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np
from heldout_operating_point import held_out_scores

from malvision.errors import MalvisionError
from malvision.evaluate.metrics import threshold_for_fpr
from malvision.scan import Scanner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _machine import command_line, cpu_model, write_report  # noqa: E402

HOME = Path.home() / ".cache" / "malvision"
CORPORA = ("benign-github-heldout", "benign-github-heldout2", "benign-github6", "benign-heldout")
POINTS = (0.01, 0.003, 0.001)


def _row(run: Path, corpora: list[Path]) -> str:
    oof = json.loads((run / "oof_scores.json").read_text())
    scanner = Scanner(run / "model.pt")
    held, flagged = [], []
    card_t = float(scanner.card["threshold"])
    for corpus in corpora:
        scores = [s for _, s in held_out_scores(scanner, sorted((corpus / "pe").iterdir()))]
        held += scores
        flagged.append(f"{sum(s >= card_t for s in scores)} of {len(scores)}")
    h = np.asarray(held)
    y, score = np.asarray(oof["y"]), np.asarray(oof["score"], dtype=np.float64)
    mal = score[y == 1]
    at = [f"{(mal >= threshold_for_fpr(h, fpr)).mean():.1%}" for fpr in POINTS]
    return f"| {run.name} | {(mal >= card_t).mean():.1%} | {' / '.join(flagged)} | {int((h >= card_t).sum())} | {' | '.join(at)} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="`malvision train-detector` run folders")
    ap.add_argument(
        "--corpus", type=Path, action="append", help="held-out corpus (pe/ + manifest; repeatable)"
    )
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    a = ap.parse_args()
    corpora = a.corpus or [HOME / c for c in CORPORA]
    try:
        rows = [_row(r, corpora) for r in a.runs]
    except (OSError, ValueError, MalvisionError) as e:
        sys.exit(f"error: not detector runs and held-out corpora ({e})")
    head = " | ".join(f"detected at held-out {p:.1%} FPR" for p in POINTS)
    text = (
        "# Held-out benign sets pooled: false positives and detection at their own operating points\n\n"
        f"Held-out sets: {', '.join(c.name for c in corpora)}; malware: each run's out-of-fold scores. Made on "
        f"{dt.date.today():%Y-%m-%d} on {cpu_model()}, {os.cpu_count()} cores shared with other jobs, by "
        f"`{command_line()}`.\n\n"
        f"| run | detected at the card's threshold | flagged at it, per set | flagged, all | {head} |\n"
        f"|---|---|---|---|{'---|' * len(POINTS)}\n" + "\n".join(rows) + "\n"
    )
    if a.out:
        write_report(text, a.out)
    else:
        print(text)


if __name__ == "__main__":
    main()
