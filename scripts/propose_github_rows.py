"""Candidate rows for a benign GitHub manifest: the Windows PE files a fetched repository commits.

    .venv/bin/python scripts/propose_github_rows.py --sources /work/.mirror OWNER/NAME PROJECT "WHY" \\
        [--max 15] >> rows.csv

Walks the tree at the repository's HEAD (git objects only: nothing is checked out or run), keeps the
blobs malvision's header reader takes for PE files, up to 16 MiB (blobs a shallow snapshot lacks are
skipped), one per sha256, shallowest paths first, at most ``--max``, and prints them as
``build_github_benign.py`` manifest rows (``sha256,size,repo,commit,path_in_repo,project,why``, no
header). How the sixth set's helpers listed files (2026-12-03). Review the rows before they join a
manifest: this knows nothing of what a program does, and a repository's own programs and the
third-party files it carries deserve different projects.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from pathlib import Path

from build_github_benign import SourceError, blob, git_dir  # scripts/ is on sys.path when a script runs

from malvision.pe.headers import HEAD_BYTES, PEError, parse

MAX_BYTES = 16 << 20


def pe_paths(git: Path, commit: str) -> list[str]:
    """The path of every blob at ``commit`` from 64 bytes to MAX_BYTES, shallowest first."""
    tree = subprocess.run(
        ["git", f"--git-dir={git}", "ls-tree", "-r", "-l", "-z", commit], capture_output=True, check=True
    ).stdout
    out = []
    for entry in filter(None, tree.split(b"\0")):
        meta, path = entry.split(b"\t", 1)
        _, kind, _, size = meta.split()
        if kind == b"blob" and size.isdigit() and 64 <= int(size) <= MAX_BYTES:  # "-" or "BAD": not here
            out.append(path.decode("utf-8", "surrogateescape"))
    return sorted(out, key=lambda p: (p.count("/"), p))


def rows(git: Path, repo: str, project: str, why: str, limit: int) -> list[list[object]]:
    """The manifest rows of at most ``limit`` distinct PE files at the repository's HEAD."""
    commit = subprocess.run(
        ["git", f"--git-dir={git}", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    found: list[list[object]] = []
    seen: set[str] = set()
    for path in pe_paths(git, commit):
        if len(found) >= limit:
            break
        data = blob(git, commit, path)
        if data is None:
            continue
        try:
            parse(data[:HEAD_BYTES])
        except PEError:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest not in seen:
            seen.add(digest)
            found.append([digest, len(data), repo, commit, path, project, why])
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, required=True, help="folder of fetched snapshots or clones")
    ap.add_argument("repo", help="OWNER/NAME")
    ap.add_argument("project", help="the group its files join (a slug, or an existing project's name)")
    ap.add_argument("why", help="what the files are and who built them")
    ap.add_argument("--max", type=int, default=15, help="files at most (default 15)")
    args = ap.parse_args()
    try:
        found = rows(git_dir(args.sources, args.repo), args.repo, args.project, args.why, args.max)
    except (SourceError, subprocess.CalledProcessError) as e:
        sys.exit(f"error: {args.repo}: {e}")
    csv.writer(sys.stdout, lineterminator="\n").writerows(found)
    print(f"{args.repo}: {len(found)} PE files", file=sys.stderr)


if __name__ == "__main__":
    main()
