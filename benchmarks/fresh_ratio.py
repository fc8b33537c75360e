"""A fresh ``malvision scan FILES`` against malvizv1 on the same files, alternated (not in CI).

    .venv/bin/python benchmarks/fresh_ratio.py [--pairs 7] [--limit 400] [--model default]

scan.py times every row of ours, then every row of the peer: on a shared machine whose speed drifts by
10% within minutes, a ratio of two such blocks moves with the drift. Here each pair runs our fresh
process (everything included: imports, model load, worker start, output) and then the malvizv1 driver
(one held ONNX Runtime session, its scan loop only, imports and session load left out), both with every
thread pool at one thread, on the same seeded 400 files with the page cache warm. Each pair gives a
ratio (peer seconds / ours); the report gives every pair, and the median ratio with its range. Writes
benchmarks/results/fresh-ratio.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _corpus import BENIGN_PE
from _machine import command_line, cpu_model, write_report  # benchmarks/ is on sys.path when a script runs
from _scan_common import GOAL_RATIO, MALVISION, PEER_PYTHON, loadavg
from _scan_inputs import pick_benign, warm
from _scan_measure import run_cli
from _scan_peer import peer_driver, peer_python

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--files", type=Path, default=BENIGN_PE)
    ap.add_argument("--malvizv1-python", type=Path, default=None, help=f"default {PEER_PYTHON}")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fresh-ratio.md")
    args = ap.parse_args()
    py = peer_python(args.malvizv1_python)
    if py is None:
        raise SystemExit("error: malvizv1 is not installed; see the message above")
    paths, n_total = pick_benign(args.files, args.limit, args.seed)
    size = warm(paths)
    load_start = loadavg()
    cmd = [str(MALVISION), "scan", "--json", "--model", args.model, *map(str, paths)]
    ours: list[float] = []
    peer: list[float] = []
    with tempfile.TemporaryDirectory(prefix="malvision-ratio-") as tmp:
        run_cli(cmd)  # warm-up: bytecode and the page cache of what a run imports
        for i in range(args.pairs):
            t = time.perf_counter()
            run_cli(cmd)
            ours.append(time.perf_counter() - t)
            peer.append(peer_driver(py, Path(tmp), "1 thread", paths=paths)["seconds"])
            print(f"pair {i + 1}: ours {ours[-1]:.3f} s, malvizv1 {peer[-1]:.3f} s", file=sys.stderr)
    ratios = [p / o for o, p in zip(ours, peer, strict=True)]
    med = statistics.median(ratios)
    lines = [
        "# A fresh `malvision scan` against malvizv1, alternated",
        "",
        f"- command: `{command_line()}` (from the repository root)",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU: {cpu_model()}; load average at "
        f"the start {load_start}, at the end {loadavg()}",
        f"- inputs: {len(paths)} of the {n_total} files in `{args.files}` (seed {args.seed}), "
        f"{size / 2**20:.1f} MiB, page cache warm; model `{args.model}`",
        "- ours: a fresh `malvision scan FILES --json` process, everything included; malvizv1: its driver's "
        "scan loop (one held ONNX Runtime session; imports and session load not counted); both one thread "
        "a pool",
        "",
        "| pair | ours (s) | malvizv1 (s) | ratio |",
        "|---|---|---|---|",
        *(
            f"| {i + 1} | {o:.3f} | {p:.3f} | {r:.1f}x |"
            for i, (o, p, r) in enumerate(zip(ours, peer, ratios, strict=True))
        ),
        "",
        f"**Median ratio {med:.1f}x** (range {min(ratios):.1f}x to {max(ratios):.1f}x over {args.pairs} pairs; "
        f"ours median {statistics.median(ours):.3f} s, malvizv1 median {statistics.median(peer):.3f} s); "
        f"goal >= {GOAL_RATIO:.0f}x: {'met' if med >= GOAL_RATIO else '**not met**'} at the median, "
        f"{sum(r >= GOAL_RATIO for r in ratios)} of {args.pairs} pairs at or above it.",
    ]
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
