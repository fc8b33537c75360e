"""Out-of-fold detection by PE type (machine, DLL or executable, subsystem), as a Markdown table.

    .venv/bin/python scripts/pe_types.py ~/.cache/malvision/runs/pe-detector-gbt ~/.cache/malvision/caches/pe-features-wide

Reads a `malvision train-detector` run's out-of-fold scores and threshold, and the type of each file from
its features cache (the header fields of `convert/pefeatures.py`). Shows where the detector's figures come
from: a type with many malware files and few benign ones is one the benign side says little about.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
from detector_run import load_run

from malvision.convert.pefeatures import FEATURE_NAMES


def pe_type(x: np.ndarray) -> str:
    """'i386 exe gui'-style name of one feature row."""
    on = lambda name: x[FEATURE_NAMES.index(name)] > 0  # noqa: E731
    if not on("pe_parsed"):
        return "not parsed"
    machine = next((m for m in ("i386", "amd64", "arm64") if on(f"machine_{m}")), "other")
    kind = "dll" if on("characteristics_bit13") else "exe"
    sub = next((s for s in ("gui", "console") if on(f"subsystem_{s}")), "other")
    return f"{machine} {kind} {sub}"


def main(run: Path, cache: Path) -> None:
    card, oof, ds = load_run(run, cache)
    if ds.spec.kind != "features":
        sys.exit(f"error: {cache} holds {ds.spec.kind} inputs; the PE type is read from a features cache")
    where = {i: k for k, i in enumerate(ds.ids)}
    flagged = np.asarray(oof["score"]) >= card["threshold"]
    n, hit = Counter(), Counter()
    for i, y, f in zip(oof["ids"], oof["y"], flagged, strict=True):
        key = (pe_type(ds[where[i]][0]), int(y))
        n[key] += 1
        hit[key] += int(f)
    print(f"# {card['architecture']} detector: out-of-fold results per PE type\n")
    print(
        f"Run `{run.name}`, threshold {card['threshold']:.3f} (target FPR {card['target_fpr']:g}), "
        f"{card['split'].split(':')[0]}. Made by `scripts/pe_types.py`; the type comes from the file's headers "
        "(machine, DLL flag, subsystem).\n"
    )
    print("| PE type | benign files | false positives | malware files | detected |")
    print("|---|---|---|---|---|")
    for t in sorted({t for t, _ in n}, key=lambda t: (-(n[(t, 0)] + n[(t, 1)]), t)):
        rate = f" ({hit[(t, 1)] / n[(t, 1)]:.0%})" if n[(t, 1)] else ""
        print(f"| {t} | {n[(t, 0)]} | {hit[(t, 0)]} | {n[(t, 1)]} | {hit[(t, 1)]}{rate} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(Path(sys.argv[1]).expanduser(), Path(sys.argv[2]).expanduser())
