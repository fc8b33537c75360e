"""The file types of each benign corpus, side by side, from their manifest_ext.csv, as Markdown.

    .venv/bin/python scripts/corpus_mix.py ~/.cache/malvision/caches/pe-features-win32 benign benign-extra ...

Corpora are named as folders of ~/.cache/malvision (MALVISION_CACHE moves it); the malware column comes
from the features cache given first (its manifest's pe_type). Types as in `scripts/pe_mix.py` (the
`file_type` of the headers: PE32 or PE32+, DLL flag, subsystem), counted before `--max-per-group` or the
cross-corpus de-duplication of `malvision data build` (each corpus here leaves out its earlier ones' files
already); projects as `data build` groups them (`source_project`).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from malvision.data.build import cache_home, source_project
from malvision.pe.headers import file_type_of


def file_type(row: dict[str, str]) -> str:
    """``32-bit GUI``-style type of one manifest_ext.csv row."""
    return file_type_of(row["pe_type"] == "PE32+", row["is_dll"] == "1", int(row["subsystem"] or 0))


def main(cache: Path, corpora: list[str]) -> None:
    rows = {}
    for name in corpora:
        with open(cache_home() / name / "manifest_ext.csv", newline="") as f:
            rows[name] = list(csv.DictReader(f))
    with open(cache / "manifest.csv", newline="") as f:
        malware = [r["pe_type"] or "not a PE" for r in csv.DictReader(f) if r["label"] == "malware"]
    types = sorted({file_type(r) for rs in rows.values() for r in rs} | set(malware))
    print("| type | " + " | ".join(f"`{n}`" for n in corpora) + " | malware |")
    print("|---|" + "---|" * (len(corpora) + 1))
    for t in types:
        counts = [sum(file_type(r) == t for r in rows[n]) for n in corpora]
        print(f"| {t} | " + " | ".join(f"{k:,}" for k in counts) + f" | {malware.count(t):,} |")
    dotnet = [sum(r["is_dotnet"] == "1" for r in rows[n]) for n in corpora]
    print("| .NET (CLR header) | " + " | ".join(f"{k:,}" for k in dotnet) + " | see pe_mix |")
    print("| files | " + " | ".join(f"{len(rows[n]):,}" for n in corpora) + f" | {len(malware):,} |")
    projects = [len({source_project(r["source_package"]) for r in rows[n]}) for n in corpora]
    print("| projects | " + " | ".join(f"{k:,}" for k in projects) + " | |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    try:
        main(Path(sys.argv[1]).expanduser(), sys.argv[2:])
    except (OSError, KeyError) as e:  # a corpus or cache that is not there, or not one
        sys.exit(
            f"error: {e.filename if isinstance(e, OSError) else e}: not a corpus manifest or features cache"
        )
