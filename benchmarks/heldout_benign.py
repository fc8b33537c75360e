"""False positives of the bundled detectors on benign PE files of projects no model was trained on.

The out-of-fold FPR on a detector's card comes from fold models that never saw a file's project, but
the shipped model was trained on every project of the corpus, and the corpus decides what "benign"
looks like. This scans a set kept out of all training, `SET=heldout bash scripts/build_extra_benign.sh`
(packages of projects that no training corpus draws from, chosen before any model scanned them),
with each model as shipped, at its card's threshold, and reports per file and per project, with exact
(Clopper-Pearson) 95% intervals from scipy. A file whose sha256 is in a model's training list is
left out of that model's counts and counted apart.

    .venv/bin/python benchmarks/heldout_benign.py [--corpus DIR] [--model default --model pe-detector]

Prints Markdown and writes it to benchmarks/results/heldout-benign.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from _corpus import CACHE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs
from scipy.stats import binomtest

import malvision
from malvision.card import training_ids
from malvision.errors import MalvisionError
from malvision.scan import ScanError, Scanner

ROOT = Path(__file__).resolve().parent.parent
CORPUS = CACHE / "benign-heldout"


def interval(k: int, n: int) -> str:
    """'k of n = p% (lo-hi%)', the exact 95% interval of the rate."""
    if not n:
        return "0 of 0"
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return f"{k} of {n} = {k / n:.2%} ({ci.low:.2%} to {ci.high:.2%})"


def pe_kind(row: dict[str, str]) -> str:
    """'i386 exe console'-style type of a manifest_ext row."""
    sub = {"2": "gui", "3": "console"}.get(row["subsystem"], f"subsystem {row['subsystem']}")
    return f"{row['machine']} {'dll' if row['is_dll'] == '1' else 'exe'} {sub}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="held-out corpus (pe/ + manifest_ext.csv)")
    ap.add_argument(
        "--model", action="append", help="bundled name or .pt (repeatable; default: both detectors)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "heldout-benign.md")
    args = ap.parse_args()
    models = args.model or ["default", "pe-detector"]
    try:
        with open(args.corpus / "manifest_ext.csv", newline="") as f:
            rows = {r["sha256"]: r for r in csv.DictReader(f)}
    except (OSError, KeyError, csv.Error) as e:
        raise SystemExit(
            f"error: {args.corpus} is not a built corpus ({e}); build it with "
            "`SET=heldout bash scripts/build_extra_benign.sh`"
        ) from None
    paths = [args.corpus / "pe" / sha for sha in sorted(rows)]
    missing = [p for p in paths if not p.is_file()]
    if not paths or missing:
        raise SystemExit(
            f"error: {args.corpus}: {len(missing)} of {len(paths)} files of the manifest are missing"
        )
    project = {sha: r["source_package"].rsplit("==", 1)[0].rsplit("@", 1)[0] for sha, r in rows.items()}
    projects = sorted(set(project.values()))

    lines = [
        "# Held-out benign files: false positives of the bundled detectors",
        "",
        f"- Command: `{command_line()}`",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; malvision {malvision.__version__}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        f"- Corpus: `{args.corpus}`: {len(paths)} PE files from {len(projects)} projects "
        + (
            "(`SET=heldout bash scripts/build_extra_benign.sh`), none of them in any training corpus"
            if args.corpus == CORPUS
            else "(files in a model's training list are left out of its counts: last column)"
        ),
        "- Each model as shipped, at its card's threshold. Intervals: exact (Clopper-Pearson) 95%. Per "
        "project: a project counts as flagged when any of its files is.",
        "",
        "| model | threshold | files flagged malware | projects with a flag | unknown | in training set |",
        "|---|---|---|---|---|---|",
    ]
    details: list[str] = []
    for name in models:
        try:
            scanner = Scanner(name, backend="torch")
        except MalvisionError as e:
            raise SystemExit(f"error: {e}") from None
        trained = training_ids(scanner.card)
        verdicts = [v for v in scanner.scan(paths) if not isinstance(v, ScanError)]
        if len(verdicts) != len(paths):
            raise SystemExit(f"error: {name}: {len(paths) - len(verdicts)} files could not be scanned")
        held = [v for v in verdicts if v.sha256 not in trained]
        held_projects = {project[v.sha256] for v in held}
        flagged = [v for v in held if v.verdict == "malware"]
        by_project = Counter(project[v.sha256] for v in flagged)
        lines.append(
            f"| `{name}` | {scanner.threshold:.4g} | {interval(len(flagged), len(held))} | "
            f"{interval(len(by_project), len(held_projects))} | "
            f"{sum(v.verdict == 'unknown' for v in held)} | {len(verdicts) - len(held)} |"
        )
        if flagged:
            kinds = Counter(pe_kind(rows[v.sha256]) for v in flagged)
            details.append(
                f"- `{name}` flags: "
                + "; ".join(
                    f"{p}: {k} of {sum(project[v.sha256] == p for v in held)} files"
                    for p, k in by_project.most_common()
                )
                + " (by type: "
                + ", ".join(f"{k} {t}" for t, k in kinds.most_common())
                + ")."
            )
        # the card's other operating points: what `--threshold` at them would cost here
        points = scanner.card.get("metrics", {}).get("operating_points", {})
        for target, point in sorted(points.items(), key=lambda kv: float(kv[0])):
            t = float(point["threshold"])
            if t == scanner.threshold:
                continue
            hit = [v for v in held if v.verdict != "unknown" and v.score is not None and v.score >= t]
            at = Counter(project[v.sha256] for v in hit)
            lines.append(
                f"| `{name}`, `--threshold` at its {float(target) * 100:g}% FPR point | {t:.4g} | "
                f"{interval(len(hit), len(held))} | {interval(len(at), len(held_projects))} | | |"
            )
            if at:
                details.append(
                    f"- `{name}` at its {float(target) * 100:g}% FPR point flags: "
                    + "; ".join(f"{p}: {k}" for p, k in at.most_common())
                    + "."
                )
    kinds = Counter(pe_kind(r) for r in rows.values())
    lines += [
        "",
        *details,
        "",
        "The corpus by type: " + ", ".join(f"{k} {t}" for t, k in kinds.most_common()) + ".",
    ]
    per = Counter(project.values())
    lines += ["", "Projects (files): " + ", ".join(f"{p} ({per[p]})" for p in projects) + "."]
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
