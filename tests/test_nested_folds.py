"""scripts/nested_folds.py: the fold models as one model, scored on each outer fold by inner models that never saw it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from malvision.convert.spec import ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.detector import build_detector
from malvision.errors import MalvisionError
from malvision.evaluate.board import read_run
from malvision.train import TrainConfig
from repo_scripts import load_script
from test_detector import _grouped_set


@pytest.mark.slow
def test_nested_fold_models_never_see_the_outer_fold_and_resume(tmp_path: Path) -> None:
    from corpus import minimal_pe

    rng = np.random.default_rng(3)

    def make(label: str, g: int, i: int) -> bytes:
        data = minimal_pe(0x200 * int(rng.integers(2, 9)), 0x200 * int(rng.integers(1, 5)), seed=g * 10 + i)
        if label == "malware":  # a random overlay gives malware away
            data += rng.integers(0, 256, int(rng.integers(4000, 12000)), dtype=np.uint8).tobytes()
        return data

    (tmp_path / "files").mkdir()
    write_cache(
        _grouped_set(tmp_path / "files", ".exe", make), tmp_path / "cache", ConvertSpec(kind="features")
    )
    ds = CachedDataset(tmp_path / "cache")
    for seed in (0, 3):  # seeds whose hash gives every fold benign projects
        cfg = TrainConfig(model="gbt", model_kwargs={"n_trees": 10, "max_depth": 2}, seed=seed)
        build_detector(ds, cfg, tmp_path / f"run{seed}", target_fpr=0.05, protocols=("source",))
    script = load_script("nested_folds")
    runs = [read_run(tmp_path / f"run{s}") for s in (0, 3)]
    folds = script.cache_folds(ds, runs)
    assert folds.shape == (2, len(ds))
    assert not np.array_equal(folds[0], folds[1])  # a seed redraws the benign folds
    for k in np.unique(folds[0]):
        outside = set(np.flatnonzero(folds[0] != k).tolist())
        for splits in script.inner_splits(folds, k):
            assert set().union(*(set(te.tolist()) for _, te in splits)) == outside  # every file outside
            assert sum(len(te) for _, te in splits) == len(outside)  # in one inner test fold
            for tr, te in splits:
                train, test = set(tr.tolist()), set(te.tolist())
                assert train | test == outside and not train & test
    cfgs = [TrainConfig(model="gbt", model_kwargs={"n_trees": 10, "max_depth": 2}, seed=s) for s in (0, 3)]
    quiet = Console(quiet=True)
    first = script.outer_scores(ds, cfgs, folds, 0, tmp_path / "work", quiet)
    assert first.shape == ((folds[0] == 0).sum(),) and np.isfinite(first).all()
    model = next((tmp_path / "work" / "outer0").rglob("best.pt"))
    stamp = model.stat().st_mtime_ns
    (tmp_path / "work" / "outer0" / "scores.npy").unlink()  # as if stopped before the outer fold's mean
    assert np.array_equal(script.outer_scores(ds, cfgs, folds, 0, tmp_path / "work", quiet), first)
    assert model.stat().st_mtime_ns == stamp  # the kept inner models are read, not trained again
    nested = np.full(len(ds), np.nan)
    for k in np.unique(folds[0]):
        nested[folds[0] == k] = script.outer_scores(ds, cfgs, folds, int(k), tmp_path / "work", quiet)
    lines = script.report(runs, ds, nested, 4)
    rows = [line for line in lines if line.startswith("| ") and "ROC-AUC" not in line]
    assert len(rows) == 3 and "nested" in rows[2]
    assert float(rows[2].split("|")[2]) > 0.9  # the overlay, seen across unseen collections
    runs[1].sha256 = runs[1].sha256[:-1]
    runs[1].fold = runs[1].fold[:-1]
    with pytest.raises(MalvisionError, match="do not cover the cache"):
        script.cache_folds(ds, runs)
