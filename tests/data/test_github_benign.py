"""scripts/build_github_benign.py: files pinned by repository, commit and sha256 become a benign corpus."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pip
import pytest

from malvision.data.build import benign_corpora

SCRIPT = Path(__file__).parents[2] / "scripts" / "build_github_benign.py"
LAUNCHERS = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))


def _git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
    )
    return done.stdout.strip()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)


@pytest.mark.skipif(len(LAUNCHERS) < 3, reason="pip's distlib launchers (real PE files) are not installed")
def test_pinned_files_are_checked_grouped_by_project_and_deduplicated(tmp_path: Path) -> None:
    repo = tmp_path / "src" / "acme+tools"
    (repo / "bin").mkdir(parents=True)
    _git(repo, "init", "-q")
    a, b, c = (p.read_bytes() for p in (LAUNCHERS[0], LAUNCHERS[1], LAUNCHERS[-1]))
    (repo / "bin" / "a.exe").write_bytes(a)
    (repo / "bin" / "b.exe").write_bytes(b)
    (repo / "bin" / "c.exe").write_bytes(LAUNCHERS[-1].read_bytes())
    (repo / "readme.txt").write_text("not a PE file")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "binaries")
    commit = _git(repo, "rev-parse", "HEAD")
    # a commit only a pull request's ref holds: an outsider's proposal nobody merged
    branch = _git(repo, "branch", "--show-current")
    _git(repo, "checkout", "-q", "--detach")
    (repo / "bin" / "pr.exe").write_bytes(a)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "proposed")
    proposed = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", "refs/pull/1/head", proposed)
    _git(repo, "checkout", "-q", branch)
    (repo / "bin" / "a.exe").write_bytes(b"MZ changed after the pinned commit")  # the work tree is never read
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    rows = [
        (sha(a), len(a), "acme/tools", commit, "bin/a.exe", "acme", "release"),
        (sha(b), len(b), "acme/tools", commit, "bin/b.exe", "acme", "release"),
        (sha(b), len(b), "acme/tools", commit, "bin/b.exe", "acme", "a second row of one file"),
        (sha(c), len(c), "acme/tools", commit, "bin/c.exe", "npm:acme-bin", "a registry corpus's project"),
        ("0" * 64, 10, "acme/tools", commit, "bin/gone.exe", "acme", "absent"),
        (sha(b"not a PE file"), 13, "acme/tools", commit, "readme.txt", "acme", "not a PE"),
        (sha(a), len(a), "acme/tools", proposed, "bin/pr.exe", "acme", "only in a pull request"),
        (sha(a), len(a), "acme/tools", "f" * 40, "bin/a.exe", "acme", "a commit the snapshot lacks"),
    ]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows(
            [("sha256", "size", "repo", "commit", "path_in_repo", "project", "why"), *rows]
        )
    out = tmp_path / "out"
    done = _run("--sources", tmp_path / "src", "--manifest", manifest, "--out", out)
    assert done.returncode == 2, done.stderr
    assert sorted(p.name for p in (out / "pe").iterdir()) == sorted([sha(a), sha(b), sha(c)])
    assert (out / "pe" / sha(a)).read_bytes() == a
    missing = _rows(out / "missing.csv")
    assert [m["path_in_repo"] for m in missing] == ["bin/gone.exe", "readme.txt", "bin/pr.exe", "bin/a.exe"]
    assert missing[1]["why"].startswith("not a PE file") and missing[2]["why"] == "commit on no branch or tag"
    assert missing[3]["why"] == "commit not in it"
    # each one named on a line of its own, repository, commit and path
    assert f"error: acme/tools@{commit[:12]}:bin/gone.exe: absent (sha256 000000" in done.stderr
    assert f"error: acme/tools@{'f' * 12}:bin/a.exe: commit not in it" in done.stderr
    ext = {r["sha256"]: r for r in _rows(out / "manifest_ext.csv")}
    assert {r["machine"] for r in ext.values()} <= {"i386", "amd64", "arm64"}
    assert all(r["is_dll"] == "0" and r["source_group"] == "github" for r in ext.values())
    assert len(_rows(out / "duplicates.csv")) == 1
    # malvision reads it as a benign corpus, grouped by project across repositories and commits
    (part,) = benign_corpora(out)
    assert sorted(r.group for r in part.records) == ["github:acme", "github:acme", "npm:acme-bin"]
    # a second run with the first as a base corpus keeps nothing new
    again = _run(
        "--sources", tmp_path / "src", "--manifest", manifest, "--out", tmp_path / "o2", "--base", out
    )
    assert again.returncode == 2 and "0 files of 0 projects" in again.stderr


def test_a_missing_repository_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "sha256,size,repo,commit,path_in_repo,project,why\n" + "0" * 64 + ",1,acme/gone,HEAD,a.exe,x,y\n"
    )
    done = _run("--sources", tmp_path, "--manifest", manifest, "--out", tmp_path / "out")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "repository acme/gone not found" in done.stderr and not (tmp_path / "out").exists()
    manifest.write_text(
        "sha256,size,repo,commit,path_in_repo,project,why\n" + "0" * 64 + ",1,acme,HEAD,a.exe,x,y\n"
    )
    bad = _run("--sources", tmp_path, "--manifest", manifest, "--out", tmp_path / "out")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "m.csv:2: a row needs" in bad.stderr
    manifest.write_bytes(b"sha256,size\n\xff\xfe not text\n")
    binary = _run("--sources", tmp_path, "--manifest", manifest, "--out", tmp_path / "out")
    assert binary.returncode == 1 and binary.stderr.startswith(f"error: {manifest}: not a manifest CSV (")


def test_committed_manifests_pin_each_file_once_and_keep_the_heldout_set_apart() -> None:
    """Every scripts/benign_github*.csv row pins one file by sha256 and commit; no file is in two sets, and
    no project or repository of a held-out set is in a set the models train on."""
    sets = {p.stem: _rows(p) for p in sorted(SCRIPT.parent.glob("benign_github*.csv"))}
    assert {"benign_github", "benign_github_heldout"} <= sets.keys() and len(sets) >= 5
    hexes = {"sha256": 64, "commit": 40}
    for name, rows in sets.items():
        assert rows and list(rows[0]) == [
            "sha256",
            "size",
            "repo",
            "commit",
            "path_in_repo",
            "project",
            "why",
        ], name
        for r in rows:
            assert all(len(r[k]) == n and int(r[k], 16) >= 0 for k, n in hexes.items()), (name, r)
            assert int(r["size"]) > 0 and r["repo"].count("/") == 1 and r["project"] and r["path_in_repo"], (
                name,
                r,
            )
    shas = [r["sha256"] for rows in sets.values() for r in rows]
    assert len(shas) == len(set(shas))
    heldout = [r for name in [n for n in sets if "heldout" in n] for r in sets.pop(name)]
    trained = [r for rows in sets.values() for r in rows]
    for key in ("project", "repo"):
        shared = {r[key] for r in heldout} & {r[key] for r in trained}
        assert not shared, (key, shared)


PROPOSE = SCRIPT.with_name("propose_github_rows.py")


@pytest.mark.skipif(len(LAUNCHERS) < 2, reason="pip's distlib launchers (real PE files) are not installed")
def test_proposed_rows_are_the_pe_files_at_head_and_build_a_corpus(tmp_path: Path) -> None:
    repo = tmp_path / "src" / "acme+tools"
    (repo / "bin" / "deep").mkdir(parents=True)
    a, b = LAUNCHERS[0].read_bytes(), LAUNCHERS[1].read_bytes()
    _git(repo, "init", "-q")
    (repo / "bin" / "deep" / "b.exe").write_bytes(b)
    (repo / "bin" / "a.exe").write_bytes(a)
    (repo / "bin" / "copy-of-a.dll").write_bytes(a)  # one row a file
    (repo / "bin" / "fake.exe").write_bytes(b"MZ" + bytes(200))  # no PE header
    (repo / "readme.txt").write_text("not a PE file" * 10)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "binaries")
    commit = _git(repo, "rev-parse", "HEAD")

    def propose(*extra: str) -> list[list[str]]:
        done = subprocess.run(
            [sys.executable, PROPOSE, "--sources", tmp_path / "src", "acme/tools", "acme", "release", *extra],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return list(csv.reader(done.stdout.splitlines()))

    got = propose()
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    assert got == [  # shallowest first; the copy and the non-PE files left out
        [sha(a), str(len(a)), "acme/tools", commit, "bin/a.exe", "acme", "release"],
        [sha(b), str(len(b)), "acme/tools", commit, "bin/deep/b.exe", "acme", "release"],
    ]
    assert len(propose("--max", "1")) == 1
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows(
            [("sha256", "size", "repo", "commit", "path_in_repo", "project", "why"), *got]
        )
    done = _run("--sources", tmp_path / "src", "--manifest", manifest, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert {r["sha256"] for r in _rows(tmp_path / "out" / "manifest.csv")} == {sha(a), sha(b)}
    missing = subprocess.run(
        [sys.executable, PROPOSE, "--sources", tmp_path / "src", "acme/absent", "x", "y"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "acme/absent" in missing.stderr


def test_build_corpora_checks_its_sources_first_and_refuses_an_incomplete_corpus(tmp_path: Path) -> None:
    """Every absent repository is named before any download, and a corpus whose builder listed missing
    files is not taken as built on the next run (its manifest is written all the same)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "MALVISION_CACHE": str(tmp_path / "cache"), "SOURCES": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    run = subprocess.run(
        ["bash", "scripts/build_corpora.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    if (root.parent / "shared" / "data" / "malware_v2_manifest.csv").is_file():  # else the line names it
        assert re.match(
            r"error: (\d+) of the \1 repositories these corpora are built from are not under", run.stderr
        )
    assert not list((tmp_path / "cache").iterdir())  # nothing fetched, nothing half-built
    part = tmp_path / "cache" / "benign-github"
    part.mkdir()
    (part / "manifest_ext.csv").write_text("sha256\n")
    (part / "missing.csv").write_text(
        "sha256,repo,commit,path_in_repo,why\n" + "0" * 64 + ",acme/tools,abc,a.exe,changed\n"
    )
    again = subprocess.run(
        ["bash", "scripts/build_corpora.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 2 and again.stderr.startswith(
        f"error: {part} is incomplete: 1 file(s) missing or changed"
    )
