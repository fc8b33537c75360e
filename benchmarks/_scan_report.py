"""The Markdown report of benchmarks/scan.py: its tables, the agreement counts and the whole page."""

from __future__ import annotations

import argparse
import os
import platform
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_model  # benchmarks/ is on sys.path when a script runs
from _scan_common import DISK, GOAL_RATIO, MB, MEMORY, PEER_RECIPE, Run, loadavg

import malvision
from malvision.io import human_size
from malvision.scan import Scanner

THROUGHPUT_HEADER = [
    "tool", "configuration", "pools", "input", "files", "size", "seconds", "files/s", "MB/s", "vs malvizv1",
    "goal", "met", "load", "note",
]  # fmt: skip
AGREEMENT_HEADER = [
    "input", "tool", "files", "malware", "benign", "unknown / uncertain", "errors", "in training set",
]  # fmt: skip


@dataclass
class Setup:
    """What the report says about the run itself: the command, the machine, our model and the peer."""

    args: argparse.Namespace
    command: str
    load_start: str
    default_threads: int
    base: Scanner
    load_seconds: float
    py: Path | None


@dataclass
class Results:
    """The inputs the steps measured and what they measured on them."""

    paths: list[Path]
    n_total: int
    size: int
    small: Path
    runs: list[Run]
    lat_rows: list[list[str]]
    rss_rows: list[list[str]]
    peer_versions: dict[str, str]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"] + [
        f"| {' | '.join(r)} |" for r in rows
    ]


def throughput_rows(runs: list[Run]) -> list[list[str]]:
    """One row per run, ours with its speed ratio to the peer's run on the same inputs and pools."""
    peers = {(r.inputs, r.pools): r for r in runs if r.tool == "malvizv1"}
    rows = []
    for r in runs:
        peer = peers.get((r.inputs, r.pools))
        ratio, goal, met = "", "", ""
        if r.tool == "malvision" and peer is not None:
            x = peer.seconds / r.seconds
            ratio, goal = f"{x:.1f}x", f">= {GOAL_RATIO:.0f}x"
            met = "yes" if x >= GOAL_RATIO else "**no**"
        elif r.tool == "malvision":
            ratio = "peer skipped"
        rows.append([
            r.tool, r.config, r.pools, r.inputs, str(r.files), human_size(r.size), f"{r.seconds:.2f}",
            f"{r.files / r.seconds:,.1f}", f"{r.size / MB / r.seconds:,.1f}", ratio, goal, met,
            f"{r.load:.1f}", r.note,
        ])  # fmt: skip
    return rows


def agreement_rows(runs: list[Run], training: set[str]) -> list[list[str]]:
    """Verdict counts per run, and for ours how many inputs are in the model's training set."""
    rows = []
    for r in runs:
        c = Counter(r.verdicts.values())
        in_train = sum(1 for s in r.sha256.values() if s in training) if r.tool == "malvision" else None
        rows.append([
            r.inputs, r.tool, str(len(r.verdicts)), str(c["malware"]), str(c["benign"]),
            str(c["unknown"] + c["uncertain"]), str(c["error"]), "" if in_train is None else str(in_train),
        ])  # fmt: skip
    return rows


def overlap(ours: Run, peer: Run) -> str:
    """A line on the files both tools, only ours or only the peer flag as malware."""

    def flagged(r: Run) -> set[str]:
        return {k for k, v in r.verdicts.items() if v == "malware"}

    a, b = flagged(ours), flagged(peer)
    return f"- {ours.inputs}: both flag {len(a & b)}; ours only {len(a - b)}; malvizv1 only {len(b - a)}."


def ours_differ(runs: list[Run]) -> tuple[int, int]:
    """Our configurations on the disk files, and on how many files they differ from the first."""
    ours_disk = [r for r in runs if r.tool == "malvision" and r.inputs == DISK]
    diff = sum(
        1 for k, v in ours_disk[0].verdicts.items() if any(o.verdicts.get(k) != v for o in ours_disk[1:])
    )
    return len(ours_disk), diff


def agreement(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """The first run of each tool per input, and the overlap line per input both tools scanned."""
    firsts: dict[tuple[str, str], Run] = {}
    for r in runs:
        firsts.setdefault((r.tool, r.inputs), r)
    both = [
        overlap(firsts[("malvision", inputs)], firsts[("malvizv1", inputs)])
        for inputs in (DISK, MEMORY)
        if ("malvision", inputs) in firsts and ("malvizv1", inputs) in firsts
    ]
    return list(firsts.values()), both


def model_input(base: Scanner) -> str:
    """The model's input, as the report names it."""
    spec = base.spec
    return (
        f"{spec.kind} {spec.image_size}x{spec.image_size}"
        if spec.kind == "image"
        else f"{spec.kind}, max_len {spec.max_len}"
    )


def ort_version() -> str:
    """This environment's onnxruntime version, or ``not installed``."""
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "not installed"


def peer_line(py: Path | None, peer_versions: dict[str, str]) -> str:
    """The header line on the peer: its versions and how it is run, or that it was skipped."""
    return (
        f"- peer: malvizv1 {peer_versions.get('malvizv1')} (onnxruntime {peer_versions.get('onnxruntime')}, "
        f"Pillow {peer_versions.get('pillow')}, numpy {peer_versions.get('numpy')}) from `{py}`; "
        "benchmarks/_malvizv1_driver.py holds one ONNX Runtime session and runs its "
        "`pe_file_to_image_dynamic` + `preprocess_image` + `session.run` + softmax per file; "
        "its verdict rule: top class below 0.90 confidence is `uncertain`"
        if py is not None
        else f"- peer: **skipped**, malvizv1 not found (make its venv: `{PEER_RECIPE}`)"
    )


def header(s: Setup, res: Results) -> list[str]:
    """The title and the bullets on the command, machine, versions, peer, model, inputs and pools."""
    args, base, card = s.args, s.base, s.base.card
    model_in, ort, peer = model_input(base), ort_version(), peer_line(s.py, res.peer_versions)
    return [
        "# Scan benchmark: malvision vs malvizv1",
        "",
        f"- command: `{s.command}` (from the repository root)",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); "
        f"load average at the start: {s.load_start}, at the end: {loadavg()} (a shared machine)",
        f"- malvision {malvision.__version__}, Python {platform.python_version()}, torch {torch.__version__} "
        f"({s.default_threads} threads by default), onnxruntime {ort}, numpy {np.__version__}",
        peer,
        f"- model: `{base.model_path}` ({card.get('architecture', '?')}, input {model_in}, "
        f"classes {', '.join(base.classes)}), threshold {base.threshold:.9g} from its card "
        f"(target FPR {card.get('target_fpr', '?')}); loaded in {s.load_seconds:.2f} s (not in the timings)",
        f"- inputs: {len(res.paths)} of the {res.n_total} files in `{args.files}` (seeded subsample, seed {args.seed}), "
        f"{human_size(res.size)}; page cache warmed by reading every file once before any timing",
        "- pools: `default` leaves every thread pool as the library sets it; `1 thread` caps torch, OpenMP "
        "and OpenBLAS (threadpoolctl) and ONNX Runtime's intra-op pool at one thread, for both tools "
        "(ours: Scanner(threads=None) with the pools set by this script, and an `OnnxModel(threads=1)` session for ONNX; `malvision scan` itself runs as `1 thread`, its default `--threads 1`)",
    ]  # fmt: skip


def render(s: Setup, res: Results) -> str:
    """The whole Markdown report."""
    n_ours, diff = ours_differ(res.runs)
    agree, both = agreement(res.runs)
    training = set(s.base.card.get("training_sha256", []))
    small = res.small
    lines = [
        *header(s, res),
        "",
        "## Throughput",
        "",
        "Wall time of the scan loop only (model and session already loaded; reader processes started), "
        "except the fresh-process row, which includes everything; fastest of "
        f"{s.args.repeat} run(s); MB/s is 10^6 input bytes per second; `vs malvizv1` is its time / ours on the "
        "same files with the same pools; `load` is the 1-minute load average right after the row.",
        "",
        *table(THROUGHPUT_HEADER, throughput_rows(res.runs)),
        "",
        f"Our {n_ours} configurations on the same files gave "
        + ("identical verdicts." if diff == 0 else f"different verdicts on {diff} file(s)."),
        "",
        f"## Latency, one small file (`{small.name[:16]}…`, {human_size(small.stat().st_size)})",
        "",
        *table(["tool", "measure", "pools", "median", "runs", "note"], res.lat_rows),
        "",
        "## Peak RSS",
        "",
        "`peak RSS`: VmHWM of the fresh process, polled from /proc/<pid>/status every 10 ms (not "
        "`ru_maxrss`, which carries the parent's peak over fork and exec). `tree`: the peak of VmRSS summed "
        "over the process and its worker processes, polled the same way; the goal applies to it.",
        "",
        *table(["tool", "run", "size", "peak RSS", "tree", "seconds", "goal", "met", "note"], res.rss_rows),
        "",
        "## Agreement",
        "",
        f"Files each tool calls malware: ours at the card threshold ({s.base.threshold:.9g}; `unknown` is "
        "triage refusing a file), the peer when its result is `malware` (`uncertain` is below 0.90). "
        "`in training set` counts our inputs whose sha256 is in the model card's training list: "
        "verdicts on those are not held-out numbers.",
        "",
        *table(AGREEMENT_HEADER, agreement_rows(agree, training)),
        "",
        *both,
        "",
        "Not like for like: the two tools use different models (ours: the checkpoint above; malvizv1: "
        "resnet18 on 224x224 RGB ImageNet-normalised images), so the speed ratio is partly a model-size ratio.",
    ]
    return "\n".join(lines) + "\n"
