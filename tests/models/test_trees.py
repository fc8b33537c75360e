"""``gbt``: scikit-learn's trees held as tensors score exactly as scikit-learn does, save, load and export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.ensemble import GradientBoostingClassifier

from malvision.checkpoint import load_checkpoint, save_checkpoint
from malvision.errors import ModelError
from malvision.models import create_model

KW = {"n_features": 12, "n_trees": 40, "max_depth": 4}


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    x[:, 3] = np.round(x[:, 3])  # a few repeated values, so thresholds fall between close floats too
    y = (x[:, 0] + x[:, 3] * x[:, 1] - 0.5 * x[:, 7] ** 2 > 0).astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def fitted() -> torch.nn.Module:
    x, y = _data(500, 0)
    model = create_model("gbt", in_kind="features", n_classes=2, **KW)
    model.fit(x, y, None, 0)
    return model.eval()


def test_scores_match_scikit_learn_on_unseen_rows(fitted: torch.nn.Module) -> None:
    x, y = _data(500, 0)
    clf = GradientBoostingClassifier(
        n_estimators=40, max_depth=4, learning_rate=0.05, subsample=0.8, max_features=0.3, random_state=0
    ).fit(x, y)
    test, truth = _data(400, 1)
    ours = fitted.raw_score(torch.from_numpy(test)).double().numpy()
    assert np.abs(ours - clf.decision_function(test)).max() < 1e-5
    logits = fitted(torch.from_numpy(test))
    assert logits.shape == (400, 2) and torch.all(logits[:, 0] == 0)
    assert ((logits[:, 1] > 0).numpy() == truth).mean() > 0.8  # it learnt the rule, on rows it never saw


def test_typical_input_is_the_training_mean(fitted: torch.nn.Module) -> None:
    x, _ = _data(500, 0)
    mean, std = fitted.typical_input()
    np.testing.assert_allclose(mean.numpy(), x.mean(0), atol=1e-6)
    np.testing.assert_allclose(std.numpy(), x.std(0), atol=1e-6)


def test_checkpoint_round_trip_and_onnx_parity(fitted: torch.nn.Module, tmp_path: Path) -> None:
    from malvision.export import PARITY_ATOL, export_onnx

    path = tmp_path / "gbt.pt"
    save_checkpoint(
        path, fitted, model_name="gbt", model_kwargs=KW, in_kind="features", n_classes=2, vocab_size=None,
        spec={"kind": "features"}, classes=["benign", "malware"], seed=0, manifest_hash=None,
    )  # fmt: skip
    again = load_checkpoint(path).model
    test = torch.from_numpy(_data(50, 2)[0])
    torch.testing.assert_close(again(test), fitted(test))
    assert export_onnx(path)["max_abs_diff"] < PARITY_ATOL


def test_bad_settings_and_inputs_are_model_errors(fitted: torch.nn.Module) -> None:
    with pytest.raises(ModelError, match="two classes"):
        create_model("gbt", in_kind="features", n_classes=3)
    with pytest.raises(ModelError, match="learning_rate"):
        create_model("gbt", in_kind="features", n_classes=2, learning_rate=0)
    with pytest.raises(ModelError, match="max_depth"):
        create_model("gbt", in_kind="features", n_classes=2, max_depth=20)
    with pytest.raises(ModelError, match="does not take 'image'"):
        create_model("gbt", in_kind="image", n_classes=2)
    with pytest.raises(ModelError, match=r"expects a float \(B, 12\) tensor"):
        fitted(torch.rand(2, 13))
    fresh = create_model("gbt", in_kind="features", n_classes=2, **KW)
    with pytest.raises(ModelError, match="needs every class"):
        fresh.fit(np.zeros((10, 12), np.float32), np.zeros(10, np.int64), None, 0)


def test_a_tree_pointing_outside_itself_is_a_checkpoint_error(
    fitted: torch.nn.Module, tmp_path: Path
) -> None:
    from malvision.errors import CheckpointError

    for name, bad in (("feature", 12), ("left", -1), ("right", 10**6)):
        path = tmp_path / f"{name}.pt"
        save_checkpoint(
            path, fitted, model_name="gbt", model_kwargs=KW, in_kind="features", n_classes=2, vocab_size=None,
            spec={"kind": "features"}, classes=["benign", "malware"], seed=0, manifest_hash=None,
        )  # fmt: skip
        blob = torch.load(path, weights_only=True)
        blob["state_dict"][name][0] = bad
        torch.save(blob, path)
        with pytest.raises(CheckpointError, match=f"{name} indices leave"):
            load_checkpoint(path)


def test_the_fit_reports_each_tree_as_it_is_grown() -> None:
    x, y = _data(200, 0)
    model = create_model("gbt", in_kind="features", n_classes=2, **{**KW, "n_trees": 7})
    seen: list[tuple[int, int]] = []
    model.fit(x, y, None, 0, on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 7) for i in range(1, 8)]
