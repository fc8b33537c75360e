"""Splits: no leakage, full coverage, group-disjoint, stratified, reproducible, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from malvision.data.splits import (
    group_holdout,
    group_kfold,
    stratified_holdout,
    stratified_kfold,
    train_val_split,
)
from malvision.errors import DatasetError


@pytest.fixture
def data() -> tuple[np.ndarray, list[str | None]]:
    rng = np.random.default_rng(7)
    labels = np.array(["benign"] * 120 + ["malware"] * 60)
    groups: list[str | None] = [f"pkg{k}" for k in rng.integers(0, 30, 120)] + [
        f"fam{k}" for k in rng.integers(0, 15, 60)
    ]
    groups[5] = None  # a sample without a group is a group of its own
    return labels, groups


def _check_partition(folds: list[tuple[np.ndarray, np.ndarray]], n: int) -> None:
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(n))  # every sample tested exactly once
    for tr, te in folds:
        assert np.intersect1d(tr, te).size == 0
        assert sorted(np.concatenate([tr, te]).tolist()) == list(range(n))
        assert tr.dtype == np.int64 and np.all(np.diff(tr) > 0)


def test_stratified_kfold(data: tuple[np.ndarray, list[str | None]]) -> None:
    labels, _ = data
    folds = stratified_kfold(labels, n_splits=5, random_state=1)
    assert len(folds) == 5
    _check_partition(folds, len(labels))
    for _, te in folds:
        assert (labels[te] == "malware").sum() == 12  # class shares kept
    again = stratified_kfold(labels, n_splits=5, random_state=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = stratified_kfold(labels, n_splits=5, random_state=2)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_too_few_samples_for_folds() -> None:
    labels = ["a"] * 10 + ["rare"] * 3
    with pytest.raises(DatasetError, match=r"fewer than 5 samples: rare \(3\)"):
        stratified_kfold(labels, n_splits=5)
    assert len(stratified_kfold(labels, n_splits=3)) == 3
    with pytest.raises(DatasetError, match="only"):
        stratified_holdout(["a"] * 10 + ["only"])
    # Integer labels with their names: the error names the class, not its number.
    names = ["benign", "Fam ünï"]
    with pytest.raises(DatasetError, match=r"fewer than 2 samples: Fam ünï \(1\)"):
        stratified_holdout(np.array([0] * 10 + [1]), names=names)
    with pytest.raises(DatasetError, match=r"fewer than 2 groups: Fam ünï \(1\)"):
        group_kfold(np.array([0] * 4 + [1] * 2), ["a", "b", "c", "d", "e", "e"], n_splits=2, names=names)


def test_stratified_holdout(data: tuple[np.ndarray, list[str | None]]) -> None:
    labels, _ = data
    tr, te = stratified_holdout(labels, test_size=0.25, random_state=3)
    assert len(te) == 45 and (labels[te] == "malware").sum() == 15
    assert np.intersect1d(tr, te).size == 0 and len(tr) + len(te) == len(labels)
    tr2, te2 = stratified_holdout(labels, test_size=0.25, random_state=3)
    assert np.array_equal(te, te2) and np.array_equal(tr, tr2)


def test_group_kfold_is_group_disjoint(data: tuple[np.ndarray, list[str | None]]) -> None:
    labels, groups = data
    folds = group_kfold(labels, groups, n_splits=4, random_state=0)
    _check_partition(folds, len(labels))
    g = np.array([str(x) for x in groups])
    for tr, te in folds:
        assert not set(g[tr]) & set(g[te])
        assert set(labels[te]) == {"benign", "malware"}
    again = group_kfold(labels, groups, n_splits=4, random_state=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))


def test_group_kfold_needs_groups_per_class() -> None:
    labels = ["a"] * 6 + ["b"] * 6
    groups = ["g1", "g2", "g3", "g1", "g2", "g3"] + ["only"] * 6
    with pytest.raises(DatasetError, match=r"fewer than 3 groups: b \(1\)"):
        group_kfold(labels, groups, n_splits=3)
    with pytest.raises(DatasetError, match="groups for"):
        group_kfold(labels, groups[:-1])


def test_group_holdout(data: tuple[np.ndarray, list[str | None]]) -> None:
    labels, groups = data
    g = np.array([str(x) for x in groups])
    tr, te = group_holdout(labels, groups, test_size=0.2, random_state=5)
    assert not set(g[tr]) & set(g[te])
    assert len(tr) + len(te) == len(labels) and 0.1 < len(te) / len(labels) < 0.3
    assert set(labels[te]) == {"benign", "malware"}
    tr2, te2 = group_holdout(labels, groups, test_size=0.2, random_state=5)
    assert np.array_equal(te, te2)
    tr3, te3 = group_holdout(labels, groups, test_size=0.2, random_state=5, stratify=False)
    assert not set(g[tr3]) & set(g[te3])
    with pytest.raises(DatasetError, match="test_size"):
        group_holdout(labels, groups, test_size=0.8)


def test_group_holdout_few_groups_fallback() -> None:
    labels = ["a"] * 8 + ["b"] * 4
    groups = [f"a{k % 4}" for k in range(8)] + ["b1", "b1", "b2", "b2"]  # b has 2 groups < 5 folds
    tr, te = group_holdout(labels, groups, test_size=0.2)
    g = np.array(groups)
    assert not set(g[tr]) & set(g[te])
    assert {"a", "b"} <= set(np.array(labels)[te]) and {"a", "b"} <= set(np.array(labels)[tr])


def test_train_val_split(data: tuple[np.ndarray, list[str | None]]) -> None:
    labels, groups = data
    train, test = group_holdout(labels, groups, random_state=0)
    tr, va = train_val_split(train, labels, val_size=0.2, random_state=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == train.tolist()
    assert np.intersect1d(tr, va).size == 0 and np.intersect1d(va, test).size == 0
    gtr, gva = train_val_split(train, labels, groups, val_size=0.2, random_state=0)
    g = np.array([str(x) for x in groups])
    assert not set(g[gtr]) & set(g[gva])
    assert sorted(np.concatenate([gtr, gva]).tolist()) == train.tolist()
    with pytest.raises(DatasetError, match="out of range"):
        train_val_split([0, 999], labels)


def test_group_holdout_avoids_the_fold_with_a_huge_group() -> None:
    labels = np.array(["benign"] * 200 + ["malware"] * 50)
    groups = ["wine"] * 100 + [f"pkg{k % 40}" for k in range(100)] + [f"fam{k % 25}" for k in range(50)]
    for seed in range(5):
        tr, te = group_holdout(labels, groups, test_size=0.2, random_state=seed)
        assert "wine" not in {groups[i] for i in te}
        assert 0.1 <= (labels[te] == "benign").sum() / 200 <= 0.3
