"""Training weights per row: class weights, and with ``group_power`` groups (projects, families) that
weigh n ** -p a file within their class, each class keeping its total."""

from __future__ import annotations

import numpy as np
import pytest

from malvision.errors import MalvisionError
from malvision.train import TrainConfig, class_weights, sample_weights

CLASSES = ["benign", "malware"]
# benign: a project of 6 files, one of 3, one of 1 and a file without a group; malware: 3 + 1 files
LABELS = np.array([0] * 11 + [1] * 4)
GROUPS = ["big"] * 6 + ["mid"] * 3 + ["one", None] + ["famA"] * 3 + ["famB"]


def _sums(w: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    keys = [f"none{i}" if GROUPS[i] is None else str(GROUPS[i]) for i in np.flatnonzero(rows)]
    out: dict[str, float] = {}
    for k, v in zip(keys, w[rows], strict=True):
        out[k] = out.get(k, 0.0) + float(v)
    return out


def test_power_zero_is_exactly_the_class_weights() -> None:
    w = sample_weights(LABELS, GROUPS, CLASSES)
    assert w is not None and w.dtype == np.float32
    assert np.array_equal(w, class_weights(LABELS, 2).numpy()[LABELS])
    assert sample_weights(LABELS, GROUPS, CLASSES, class_weighting=False) is None  # every row weighs 1


def test_power_one_weighs_every_benign_project_alike_and_keeps_the_class_totals() -> None:
    base = class_weights(LABELS, 2).numpy()[LABELS]
    w = sample_weights(LABELS, GROUPS, CLASSES, group_power=1.0)
    assert w is not None
    benign, malware = LABELS == 0, LABELS == 1
    sums = _sums(w, benign)
    assert len(sums) == 4 and np.allclose(list(sums.values()), base[benign].sum() / 4)  # None: its own group
    assert np.isclose(w[benign].sum(), base[benign].sum())
    assert np.array_equal(w[malware], base[malware])  # malware left alone by default
    everyone = sample_weights(LABELS, GROUPS, CLASSES, group_power=1.0, group_classes="all")
    assert everyone is not None and np.array_equal(everyone[benign], w[benign])
    assert np.allclose(list(_sums(everyone, malware).values()), base[malware].sum() / 2)


def test_power_half_weighs_a_file_by_its_projects_size() -> None:
    w = sample_weights(LABELS, GROUPS, CLASSES, group_power=0.5, class_weighting=False)
    assert w is not None
    # within benign a file weighs in proportion to n ** -0.5: 6 files, 3, 1, 1
    per_file = w[[0, 6, 9, 10]]
    assert np.allclose(per_file / per_file[2], [6**-0.5, 3**-0.5, 1.0, 1.0], rtol=1e-6)
    assert np.isclose(w[LABELS == 0].sum(), 11) and np.array_equal(w[LABELS == 1], np.ones(4))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(MalvisionError, match="group_classes"):
        sample_weights(LABELS, GROUPS, CLASSES, group_power=1.0, group_classes="goodware")
    with pytest.raises(MalvisionError, match="group_power must be from 0 to 1"):
        TrainConfig(group_power=1.5)


def test_type_power_weighs_benign_types_as_the_malware_has_them() -> None:
    # benign: 8 DLLs and 3 GUI programs; malware: 3 GUI programs and 1 DLL (32- and 64-bit alike)
    types = ["64-bit DLL"] * 8 + ["32-bit GUI"] * 3 + ["32-bit GUI"] * 2 + ["64-bit GUI", "32-bit DLL"]
    base = class_weights(LABELS, 2).numpy()[LABELS]
    w = sample_weights(LABELS, GROUPS, CLASSES, types=types, type_power=1.0)
    assert w is not None
    benign = LABELS == 0
    gui, dll = benign & np.array(["GUI" in t for t in types]), benign & np.array(["DLL" in t for t in types])
    assert np.isclose(w[benign].sum(), base[benign].sum()) and np.array_equal(w[~benign], base[~benign])
    assert np.isclose(w[gui].sum() / w[benign].sum(), 3 / 4)  # the malware's GUI share
    half = sample_weights(LABELS, GROUPS, CLASSES, types=types, type_power=0.5)
    assert half is not None and w[gui][0] > half[gui][0] > base[gui][0] and half[dll][0] < base[dll][0]
    assert np.array_equal(sample_weights(LABELS, GROUPS, CLASSES, types=types, type_power=0.0), base)
    with pytest.raises(MalvisionError, match="type_power"):
        TrainConfig(type_power=1.5)
    with pytest.raises(MalvisionError, match="PE type"):
        sample_weights(LABELS, GROUPS, CLASSES, type_power=1.0)
