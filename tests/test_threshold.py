"""Threshold methods for a target FPR (evaluate/threshold.py) on synthetic scores with known tails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from malvision.evaluate.threshold import (
    bootstrap_thresholds,
    compare_methods,
    conformal_rank,
    conformal_threshold,
    empirical_threshold,
    tail_threshold,
    threshold_interval,
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _projects(n_projects: int, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Benign scores in clustered projects: each project shifts its files' log-odds together."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(0, 1.0, n_projects)
    z = np.concatenate([rng.normal(-4 + s, 1.0, per) for s in shift])
    return _sigmoid(z), np.repeat([f"p{i}" for i in range(n_projects)], per)


def test_tail_model_matches_the_true_quantile_of_a_large_sample() -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_t(df=5, size=200_000)  # heavy-ish tail: the GPD shape is positive
    benign = _sigmoid(z)
    for fpr in (0.001, 0.01):
        truth = float(_sigmoid(stats.t.isf(fpr, df=5)))
        assert abs(tail_threshold(benign, fpr) - truth) < 0.01
        assert abs(tail_threshold(benign, fpr) - empirical_threshold(benign, fpr)) < 0.01


def test_tail_model_refuses_too_few_scores_and_bad_targets() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        tail_threshold(np.linspace(0.1, 0.9, 50), 0.001)
    with pytest.raises(ValueError, match="needs 0 < fpr"):
        tail_threshold(np.linspace(0.1, 0.9, 500), 0.2)


def test_conformal_rank_holds_its_guarantee() -> None:
    assert conformal_rank(1000, 0.001) == 0  # 1,000 files cannot promise 0.1%
    assert conformal_rank(3348, 0.001) == 1
    k = conformal_rank(20_000, 0.001)
    assert 10 <= k < 20  # below the expected 20 exceedances, by the margin the 95% asks
    # the guarantee, checked by simulation: uniform scores, true FPR of the k-th largest as threshold
    rng = np.random.default_rng(2)
    n, fpr = 5000, 0.002
    over = [1 - conformal_threshold(rng.random(n), fpr) > fpr for _ in range(400)]
    assert np.mean(over) <= 0.05 + 0.03


def test_empirical_threshold_flags_at_most_the_target() -> None:
    benign, _ = _projects(200, 20)
    for fpr in (0.001, 0.01, 0.05):
        t = empirical_threshold(benign, fpr)
        assert (benign >= t).mean() <= fpr < (benign >= np.sort(benign)[::-1][int(fpr * len(benign))]).mean()


def test_bootstrap_interval_contains_the_point_and_narrows_with_more_projects() -> None:
    widths = []
    for n_proj in (60, 600):
        benign, groups = _projects(n_proj, 20, seed=3)
        y = np.r_[np.zeros(len(benign), int), np.ones(300, int)]
        score = np.r_[benign, np.linspace(0.5, 1.0, 300)]
        g = np.r_[groups, [f"m{i}" for i in range(300)]]
        for method in ("empirical", "tail", "conformal") if n_proj == 60 else ("empirical",):
            (r,) = threshold_interval(y, score, g, 0.01, method, n_boot=100)
            lo, hi = r["threshold_ci95"]
            assert lo <= r["threshold"] <= hi
            a, b = r["tpr_at_threshold_ci95"]
            assert a >= r["tpr"] >= b  # the lower end detects more
            if method == "empirical":
                widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_project_bootstrap_is_wider_than_a_file_bootstrap_for_clustered_projects() -> None:
    benign, groups = _projects(100, 30, seed=4)
    by_project = bootstrap_thresholds(benign, groups, 0.01, n_boot=300)
    by_file = bootstrap_thresholds(benign, np.arange(len(benign)), 0.01, n_boot=300)
    assert np.ptp(np.percentile(by_project, [2.5, 97.5])) > 1.5 * np.ptp(np.percentile(by_file, [2.5, 97.5]))


def test_bootstrap_is_seeded_and_shaped_by_its_targets() -> None:
    benign, groups = _projects(50, 10)
    a = bootstrap_thresholds(benign, groups, [0.01, 0.05], n_boot=50, seed=7)
    assert a.shape == (50, 2) and np.all(a[:, 0] >= a[:, 1])
    assert np.array_equal(a, bootstrap_thresholds(benign, groups, [0.01, 0.05], n_boot=50, seed=7))
    with pytest.raises(ValueError, match="groups for"):
        bootstrap_thresholds(benign, groups[:-1], 0.01)
    with pytest.raises(ValueError, match="unknown threshold method"):
        bootstrap_thresholds(benign, groups, 0.01, "median")


def test_compare_methods_checks_each_on_unseen_halves() -> None:
    benign, groups = _projects(300, 20, seed=5)
    y = np.r_[np.zeros(len(benign), int), np.ones(200, int)]
    score = np.r_[benign, np.linspace(0.3, 1.0, 200)]
    g = np.r_[groups, [f"m{i}" for i in range(200)]]
    out = compare_methods(y, score, g, 0.01, n_boot=30, n_splits=20)
    assert set(out) == {"empirical", "tail", "conformal"}
    # the conformal bound is the most cautious: highest threshold, fewest false positives on unseen halves
    assert out["conformal"]["threshold"] >= out["empirical"]["threshold"]
    checks = {m: r["split_check"] for m, r in out.items()}
    assert checks["conformal"]["fpr_on_other_half_mean"] <= checks["empirical"]["fpr_on_other_half_mean"]
    assert all(0 <= c["share_over_target"] <= 1 for c in checks.values())


def test_the_card_carries_each_points_threshold_interval() -> None:
    from malvision.card import _threshold_cis, operating_rows
    from malvision.evaluate.detection import detection_report

    benign, groups = _projects(120, 10, seed=6)
    y = np.r_[np.zeros(len(benign), int), np.ones(100, int)]
    score = np.r_[benign, np.linspace(0.2, 1.0, 100)]
    g = np.r_[groups, [f"m{i}" for i in range(100)]]
    m = detection_report(y, score, g, target_fpr=0.01)
    for f, p in m["operating_points"].items():
        lo, hi = p["threshold_ci95"]
        assert lo <= p["threshold"] <= hi, f
        a, b = p["tpr_at_threshold_ci95"]
        assert a >= p["tpr"] >= b
    assert m["operating_points"]["0.01"]["threshold"] == m["threshold"]
    header, rows = operating_rows({"metrics": m, "target_fpr": 0.01})
    assert header[-2:] == ["threshold 95% interval", "detected at its ends"]
    lo, hi = m["operating_points"]["0.01"]["threshold_ci95"]
    (own,) = [r for r in rows if r[0] == "1% (card)"]
    assert own[-2] == f"{lo:.4f} to {hi:.4f}"
    assert _threshold_cis({"metrics": m})["0.01"] == f"; 95% interval {lo:.4f} to {hi:.4f}"
    assert _threshold_cis({"metrics": {"operating_points": {"0.01": {"threshold": 0.5}}}}) == {}


@pytest.mark.slow
def test_threshold_report_writes_markdown_and_png_and_refuses_a_non_run(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    benign, groups = _projects(150, 20, seed=8)
    rng = np.random.default_rng(8)
    mal = _sigmoid(rng.normal(3, 2, 400))
    run = tmp_path / "run"
    run.mkdir()
    oof = {
        "protocol": "source",
        "y": [0] * len(benign) + [1] * len(mal),
        "score": [*benign, *mal],
        "group": [
            *(f"{'github' if int(g[1:]) % 3 == 0 else 'pypi'}:{g}" for g in groups),
            *(f"fam{i % 40}" for i in range(len(mal))),
        ],
    }
    (run / "oof_scores.json").write_text(json.dumps(oof))
    script = Path(__file__).parents[1] / "scripts" / "threshold_report.py"
    args = ["--n-boot", "20", "--n-splits", "5", "--out", str(tmp_path / "t.md")]
    done = subprocess.run([sys.executable, script, run, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "t.md").read_text()
    assert text.count("| 0.1% |") == 3 and text.count("| 1.0% |") == 3 and "![thresholds](t.png)" in text
    assert (tmp_path / "t.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "t.json").read_text())
    assert set(results["0.001"]) == {"empirical", "tail", "conformal"}
    # the benign files at or above each card threshold, by source, add up to the file and flagged counts
    rows = {
        r.split(" | ")[0][2:]: r.split(" | ")[1:]
        for r in text.splitlines()
        if r.startswith("| github |") or r.startswith("| pypi |")
    }
    assert sorted(rows) == ["github", "pypi"]
    assert sum(int(v[0].replace(",", "")) for v in rows.values()) == len(benign)
    for col, f in ((1, "0.001"), (2, "0.01")):
        flagged = sum(int(v[col].split()[0]) for v in rows.values())
        t = results[f]["empirical"]["threshold"]
        assert flagged == int((benign >= t).sum()) > 0
    bad = subprocess.run([sys.executable, script, tmp_path, *args], capture_output=True, text=True)
    assert (
        bad.returncode == 1
        and bad.stderr.count("\n") == 1
        and "not a `malvision train-detector` run" in bad.stderr
    )


@pytest.mark.slow
@pytest.mark.parametrize("script", ["heldout_operating_point.py", "pe_mix.py"])
def test_report_scripts_refuse_a_folder_that_is_not_theirs_in_one_line(tmp_path: Path, script: str) -> None:
    import subprocess
    import sys

    path = Path(__file__).parents[1] / "scripts" / script
    bad = subprocess.run([sys.executable, path, str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")


def test_same_files_compares_runs_on_the_files_both_scored(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(2000, int), np.ones(200, int)]
    sha = [f"{i:064x}" for i in range(len(y))]
    runs = []
    for name, sep in (("a", 1.0), ("b", 3.0)):
        score = 1 / (1 + np.exp(-(rng.normal(size=len(y)) + sep * y)))
        keep = (
            slice(0, None) if name == "a" else slice(100, None)
        )  # b never scored the first 100 benign files
        run = tmp_path / name
        run.mkdir()
        oof = {"sha256": sha[keep], "y": y[keep].tolist(), "score": score[keep].tolist()}
        (run / "oof_scores.json").write_text(json.dumps(oof))
        runs.append(run)
    script = Path(__file__).parents[1] / "scripts" / "same_files.py"
    out = tmp_path / "same.md"
    done = subprocess.run([sys.executable, script, *runs, out], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "1,900 benign and 200 malware files" in text
    auc = {
        row.split("|")[1].strip(): float(row.split("|")[2])
        for row in text.splitlines()
        if row.startswith("| a ") or row.startswith("| b ")
    }
    assert auc["b"] > auc["a"] + 0.1
    fused = subprocess.run([sys.executable, script, *runs, "--fuse"], capture_output=True, text=True)
    row = next(r for r in fused.stdout.splitlines() if r.startswith("| mean of their log-odds"))
    assert fused.returncode == 0 and auc["a"] < float(row.split("|")[2]) <= 1
    bad = json.loads((runs[1] / "oof_scores.json").read_text())
    bad["y"][-1] = 0
    (runs[1] / "oof_scores.json").write_text(json.dumps(bad))
    wrong = subprocess.run([sys.executable, script, *runs], capture_output=True, text=True)
    assert wrong.returncode == 1 and wrong.stderr == "error: the runs label a shared file differently\n"
    one = subprocess.run([sys.executable, script, runs[0]], capture_output=True, text=True)
    assert one.returncode == 1 and one.stderr.count("\n") == 1 and one.stderr.startswith("error: ")


def test_type_operating_point_splits_the_card_threshold_by_file_type(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    # 1,000 benign DLLs far below the threshold and 100 benign GUI programs, 3 of them above it
    y = [0] * 1100 + [1] * 50
    score = [0.1] * 1000 + [0.95] * 3 + [0.2] * 97 + [0.99] * 30 + [0.5] * 20
    types = ["64-bit DLL"] * 1000 + ["32-bit GUI"] * 100 + ["32-bit GUI"] * 50
    run = tmp_path / "run"
    run.mkdir()
    (run / "card.json").write_text(json.dumps({"threshold": 0.9, "target_fpr": 0.01}))
    oof = {"protocol": "source", "y": y, "score": score, "pe_type": types}
    (run / "oof_scores.json").write_text(json.dumps(oof))
    script = Path(__file__).parents[1] / "scripts" / "type_operating_point.py"
    done = subprocess.run([sys.executable, script, run], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = {
        r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
        for r in done.stdout.splitlines()
        if r.startswith("| ")
    }
    assert rows["GUI"][:2] == ["100", "3"] and rows["GUI"][2].startswith("3.00% (0.62% to 8.5")
    assert rows["DLL"][:2] == ["1,000", "0"] and rows["all"][1] == "3" and rows["GUI"][4] == "60.0%"
    assert "console" not in rows  # no file of that type
    missing = subprocess.run([sys.executable, script, tmp_path / "nothing"], capture_output=True, text=True)
    assert (
        missing.returncode == 1 and missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    )
