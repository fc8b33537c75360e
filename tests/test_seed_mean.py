"""scripts/seed_mean.py: several seeds' out-of-fold scores and the score of their mean log-odds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from malvision.errors import MalvisionError
from repo_scripts import load_script


def _script():  # noqa: ANN202
    return load_script("seed_mean")


def _run(folder: Path, sha: list[str], y: np.ndarray, score: np.ndarray) -> Path:
    folder.mkdir()
    n = len(sha)
    oof = {"protocol": "source", "sha256": sha, "y": y.tolist(), "score": score.tolist(), "fold": [0] * n,
           "group": [f"g{i}" for i in range(n)], "collection": ["c"] * n, "pe_type": ["32-bit GUI"] * n}  # fmt: skip
    (folder / "oof_scores.json").write_text(json.dumps(oof))
    (folder / "card.json").write_text(json.dumps({"architecture": "lgbm", "input": "features"}))
    return folder


def test_the_mean_of_noisy_seeds_ranks_better_than_each_and_the_runs_must_hold_the_same_files(
    tmp_path: Path,
) -> None:
    sm = _script()
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.3).astype(int)
    truth = 1.5 * y  # the signal every seed sees, each through its own noise
    sha = [f"{i:064x}" for i in range(n)]
    runs = []
    for s in range(3):
        z = truth + rng.normal(size=n)
        order = rng.permutation(n)  # each run lists the files in its own order
        runs.append(
            _run(tmp_path / f"s{s}", [sha[i] for i in order], y[order], (1 / (1 + np.exp(-z)))[order])
        )
    lines = sm.report(runs)
    auc = {row.split("|")[1].strip(): float(row.split("|")[2]) for row in lines if row.startswith("| ") and "---" not in row
           and "ROC-AUC" not in row}  # fmt: skip
    singles = [auc[f"s{s}"] for s in range(3)]
    assert (
        auc["**mean of the 3 runs' log-odds**"] > max(singles) + 0.02
    )  # averaging the noise away ranks better
    assert auc["mean of the runs' figures"] == pytest.approx(np.mean(singles), abs=1e-4)
    for half in ("benign files' mean, malware files' own", "malware files' mean, benign files' own"):
        # both classes' scores carry noise here, so averaging either side alone gains part of it
        assert auc["mean of the runs' figures"] + 0.005 < auc[half] < auc["**mean of the 3 runs' log-odds**"]
    other = _run(tmp_path / "other", sha[:-1] + ["f" * 64], y, np.full(n, 0.5))
    with pytest.raises(MalvisionError, match="not hold the same files"):
        sm.report([runs[0], other])
