"""Seeded train/test splits as index arrays: stratified, group-disjoint (unseen families at test) and
source-disjoint (unseen malware collections at test).

Every function takes ``random_state`` (same seed, same split) and returns sorted int64 index arrays.
Samples whose group is None count as a group of their own. Classes too small for the split asked for
are a ``DatasetError`` naming them (no silent fallback): use fewer folds or drop the class.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import (
    GroupShuffleSplit,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from malvision.errors import DatasetError

__all__ = [
    "Split",
    "stratified_kfold",
    "stratified_holdout",
    "group_kfold",
    "group_holdout",
    "source_kfold",
    "train_val_split",
    "group_keys",
]

Split = tuple[np.ndarray, np.ndarray]  # (train indices, test indices)


def _labels(labels: Sequence[object] | np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise DatasetError("labels must be a non-empty 1-D sequence")
    return y


def group_keys(groups: Sequence[object] | np.ndarray, n: int) -> np.ndarray:
    """The groups as strings, each None a group of its own; ``n`` is the number of labels."""
    if len(groups) != n:
        raise DatasetError(f"{len(groups)} groups for {n} labels")
    # None: a group of its own (a name no real group has).
    return np.asarray([f"\0{i}" if g is None else str(g) for i, g in enumerate(groups)])


def _name(c: object, names: Sequence[str] | None) -> str:
    """A class as the user knows it: its name where ``names`` has one, else the label itself."""
    if names is not None and isinstance(c, numbers.Integral) and 0 <= int(c) < len(names):
        return str(names[int(c)])
    return str(c)


def _check_counts(y: np.ndarray, need: int, what: str, fix: str, names: Sequence[str] | None = None) -> None:
    classes, counts = np.unique(y, return_counts=True)
    small = [f"{_name(c, names)} ({n})" for c, n in zip(classes, counts, strict=True) if n < need]
    if small:
        raise DatasetError(f"class(es) with fewer than {need} {what}: {', '.join(small)}; {fix}")


def _check_groups(
    y: np.ndarray, g: np.ndarray, need: int, fix: str, names: Sequence[str] | None = None
) -> None:
    per_class = {c: len(np.unique(g[y == c])) for c in np.unique(y)}
    small = [f"{_name(c, names)} ({n})" for c, n in per_class.items() if n < need]
    if small:
        raise DatasetError(
            f"class(es) with fewer than {need} groups: {', '.join(small)}; group-disjoint splits need "
            f"several groups per class ({fix})"
        )


def _sorted(split: tuple[np.ndarray, np.ndarray]) -> Split:
    return np.sort(split[0]).astype(np.int64), np.sort(split[1]).astype(np.int64)


def _folds_for(test_size: float) -> int:
    if not 0 < test_size <= 0.5:
        raise DatasetError(f"test_size must be in (0, 0.5], got {test_size}")
    return max(2, round(1 / test_size))


def stratified_kfold(
    labels: Sequence[object] | np.ndarray,
    n_splits: int = 5,
    random_state: int = 0,
    names: Sequence[str] | None = None,
) -> list[Split]:
    """``n_splits`` (train, test) folds keeping class shares; every sample is in exactly one test fold.
    ``names``: the class names of integer labels, for the errors."""
    y = _labels(labels)
    if n_splits < 2:
        raise DatasetError(f"n_splits must be at least 2, got {n_splits}")
    _check_counts(y, n_splits, "samples", "use fewer folds or drop the class", names)
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return [_sorted(s) for s in skf.split(np.zeros(len(y)), y)]


def stratified_holdout(
    labels: Sequence[object] | np.ndarray,
    test_size: float = 0.2,
    random_state: int = 0,
    names: Sequence[str] | None = None,
) -> Split:
    """One stratified (train, test) split with ``test_size`` of the samples held out."""
    y = _labels(labels)
    if not 0 < test_size < 1:
        raise DatasetError(f"test_size must be in (0, 1), got {test_size}")
    _check_counts(y, 2, "samples", "a class needs one sample on each side; drop it", names)
    try:
        tr, te = train_test_split(
            np.arange(len(y)), test_size=test_size, stratify=y, random_state=random_state
        )
    except ValueError as e:
        raise DatasetError(f"cannot hold out {test_size} stratified: {e}") from None
    return _sorted((tr, te))


def group_kfold(
    labels: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    n_splits: int = 5,
    random_state: int = 0,
    names: Sequence[str] | None = None,
) -> list[Split]:
    """``n_splits`` stratified folds where no group (family, source package) is on both sides."""
    y = _labels(labels)
    g = group_keys(groups, len(y))
    if n_splits < 2:
        raise DatasetError(f"n_splits must be at least 2, got {n_splits}")
    _check_groups(y, g, n_splits, "use fewer folds or drop the class", names)
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return [_sorted(s) for s in sgkf.split(np.zeros(len(y)), y, g)]


def group_holdout(
    labels: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    test_size: float = 0.2,
    random_state: int = 0,
    stratify: bool = True,
    names: Sequence[str] | None = None,
) -> Split:
    """One group-disjoint (train, test) split: whole groups are held out.

    With ``stratify`` (default) the test side is one fold of a ``StratifiedGroupKFold`` with
    k = round(1 / test_size) folds (0.2 -> 5 folds, 0.3 -> 3 folds: about a third): the fold whose
    per-class shares come nearest ``test_size``, as a very large group can swell the fold it lands in.
    A class with fewer than k (but at least 2) groups lowers k to its group count, so it keeps a
    group on each side (the test share grows). Without ``stratify``, ``GroupShuffleSplit`` holds out
    ``test_size`` of the groups regardless of class.
    """
    y = _labels(labels)
    g = group_keys(groups, len(y))
    if not stratify:
        if not 0 < test_size < 1:
            raise DatasetError(f"test_size must be in (0, 1), got {test_size}")
        if len(np.unique(g)) < 2:
            raise DatasetError("a group-disjoint split needs at least 2 groups")
        gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
        return _sorted(next(gss.split(np.zeros(len(y)), y, g)))
    k = _folds_for(test_size)
    _check_groups(y, g, 2, "drop the class or use stratify=False", names)
    if any(len(np.unique(g[y == c])) < k for c in np.unique(y)):
        # A class with 2..k-1 groups: fewer folds, so it still has a group on each side.
        k = min(len(np.unique(g[y == c])) for c in np.unique(y))
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state)
    classes, totals = np.unique(y, return_counts=True)

    def badness(split: tuple[np.ndarray, np.ndarray]) -> tuple[int, float]:
        held = np.array([(y[split[1]] == c).sum() for c in classes])
        missing = int(np.sum(held == 0) + np.sum(held == totals))
        return missing, float(np.abs(held / totals - test_size).sum())

    # One big group (e.g. half the benign files from one package) can swell a fold: hold out the
    # fold whose per-class shares are nearest test_size, preferring folds with every class on both sides.
    folds = list(sgkf.split(np.zeros(len(y)), y, g))
    return _sorted(min(folds, key=badness))


def source_kfold(
    positive: Sequence[bool] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    collections: Sequence[str | None] | np.ndarray,
    random_state: int = 0,
) -> tuple[list[Split], list[str]]:
    """One fold per malware collection: that collection's malware and a share of the benign groups are
    tested by a model trained on every other collection and the other benign groups.

    ``positive`` marks the malware. Malware folds follow the sorted collection names; a benign group
    goes to the fold a seeded hash of its name picks, so a file's fold never depends on which other
    files a cache holds: caches of the same corpora (features, images, bytes) share their folds file by
    file. Returns the folds and the collection of each.
    """
    pos = np.asarray(positive, dtype=bool)
    if pos.ndim != 1 or pos.size == 0:
        raise DatasetError("labels must be a non-empty 1-D sequence")
    g = group_keys(groups, len(pos))
    if len(collections) != len(pos):
        raise DatasetError(f"{len(collections)} collections for {len(pos)} labels")
    if any(c is None for c, p in zip(collections, pos, strict=True) if p):
        raise DatasetError("malware without a collection: rebuild the cache with malvision data build")
    names = sorted({str(c) for c, p in zip(collections, pos, strict=True) if p})
    if len(names) < 2:
        raise DatasetError(f"source-disjoint folds need malware of 2 or more collections, got {names}")
    k = len(names)
    fold = np.empty(len(pos), dtype=np.int64)
    for i, (p, c, grp) in enumerate(zip(pos, collections, g, strict=True)):
        if p:
            fold[i] = names.index(str(c))
        else:
            fold[i] = int(hashlib.sha256(f"{random_state}:{grp}".encode()).hexdigest(), 16) % k
    if not all(np.any(fold[~pos] == f) for f in range(k)):
        raise DatasetError(f"too few benign groups to give each of {k} collection folds some benign files")
    idx = np.arange(len(pos))
    return [(idx[fold != f], idx[fold == f]) for f in range(k)], names


def train_val_split(
    indices: Sequence[int] | np.ndarray,
    labels: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray | None = None,
    val_size: float = 0.1,
    random_state: int = 0,
) -> Split:
    """Split training ``indices`` (into the full ``labels``/``groups``) into (train, validation).

    Stratified; group-disjoint too when ``groups`` is given. Returns dataset indices, not positions.
    """
    idx = np.asarray(indices, dtype=np.int64)
    y = _labels(labels)
    if idx.size == 0:
        raise DatasetError("no training indices to split")
    if idx.min() < 0 or idx.max() >= len(y):
        raise DatasetError(f"training index out of range 0..{len(y) - 1}")
    sub_y = y[idx]
    if groups is None:
        tr, va = stratified_holdout(sub_y, test_size=val_size, random_state=random_state)
    else:
        g = np.asarray(groups, dtype=object)
        if len(g) != len(y):
            raise DatasetError(f"{len(g)} groups for {len(y)} labels")
        tr, va = group_holdout(sub_y, list(g[idx]), test_size=min(val_size, 0.5), random_state=random_state)
    return np.sort(idx[tr]), np.sort(idx[va])
