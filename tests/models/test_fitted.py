"""Every registered fitted model (trees, linear): fit, score, typical input, save, load, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from malvision.checkpoint import load_checkpoint, save_checkpoint
from malvision.errors import CheckpointError, ModelError
from malvision.export import TreeArrays
from malvision.models import FittedModel, MalvisionModel, create_model, is_fitted, list_models, model_info
from malvision.models.trees import TreeEnsemble

FITTED = [n for n in list_models("features") if model_info(n).fitted]  # ngram: tests/models/test_ngrams.py
TINY: dict[str, dict[str, Any]] = {
    "gbt": {"n_trees": 30, "max_depth": 3},
    "lgbm": {"n_trees": 60, "max_depth": 4, "learning_rate": 0.2},
    "linear": {},
}
N = 12


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N)).astype(np.float32)
    return x, (x[:, 0] - 0.7 * x[:, 5] + 0.2 * rng.normal(size=n) > 0).astype(np.int64)


def _fit(name: str, seed: int = 0) -> torch.nn.Module:
    model = create_model(name, in_kind="features", n_classes=2, n_features=N, **TINY[name])
    steps: list[tuple[int, int]] = []
    model.fit(*_rows(400, 0), None, seed, on_step=lambda done, total: steps.append((done, total)))
    assert steps and steps[-1][0] == steps[-1][1]  # progress ends at 100%
    return model.eval()


def test_the_two_protocols_cover_every_model() -> None:
    assert {"gbt", "lgbm", "linear"} <= set(FITTED)
    for name in list_models():
        cls = model_info(name).builder
        assert issubclass(cls, FittedModel) != issubclass(cls, MalvisionModel), name
        assert is_fitted(cls) == model_info(name).fitted


@pytest.mark.parametrize("name", FITTED)
def test_it_learns_the_rule_and_scores_as_logits(name: str) -> None:
    model = _fit(name)
    x, y = _rows(300, 1)
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    assert logits.shape == (300, 2) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert ((logits[:, 1] > logits[:, 0]).numpy() == y).mean() > 0.85  # on rows it never saw
    with torch.no_grad():
        assert torch.equal(_fit(name)(torch.from_numpy(x)), logits)  # same rows, same seed: same model


@pytest.mark.parametrize("name", FITTED)
def test_typical_input_is_the_training_mean(name: str) -> None:
    mean, std = _fit(name).typical_input()
    x, _ = _rows(400, 0)
    np.testing.assert_allclose(mean.numpy(), x.mean(0), atol=1e-6)
    np.testing.assert_allclose(std.numpy(), x.std(0), atol=1e-6)


@pytest.mark.parametrize("name", FITTED)
def test_checkpoint_round_trip_and_onnx_parity(name: str, tmp_path: Path) -> None:
    from malvision.export import PARITY_ATOL, export_onnx

    model = _fit(name)
    path = save_checkpoint(
        tmp_path / f"{name}.pt", model, model_name=name, model_kwargs={"n_features": N, **TINY[name]},
        in_kind="features", n_classes=2, vocab_size=None, spec={"kind": "features"},
        classes=["benign", "malware"], seed=0, manifest_hash=None,
    )  # fmt: skip
    x = torch.from_numpy(_rows(50, 2)[0])
    torch.testing.assert_close(load_checkpoint(path).model(x), model(x))
    report = export_onnx(path)
    assert report["max_abs_diff"] < PARITY_ATOL
    if isinstance(model, TreeEnsemble):  # and the trees as numpy arrays, checked the same way
        assert report["trees"]["max_abs_diff"] < PARITY_ATOL
        trees = TreeArrays(path.with_name(report["trees"]["file"]))
        np.testing.assert_allclose(trees.run(x.numpy()), model(x).detach().numpy(), atol=1e-5)
    else:
        assert "trees" not in report


def test_numpy_trees_walk_as_torch_for_many_classes_and_refuse_damage(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, N)).astype(np.float32)
    y = np.digitize(x[:, 0] + 0.5 * x[:, 3], [-0.5, 0.5])  # three classes
    model = create_model("lgbm", in_kind="features", n_classes=3, n_features=N, **TINY["lgbm"])
    model.fit(x, y, None, 0)
    np.savez(tmp_path / "t.npz", **model.arrays())
    got = TreeArrays(tmp_path / "t.npz").run(x[:50])
    assert got.shape == (50, 3)
    np.testing.assert_allclose(got, model(torch.from_numpy(x[:50])).detach().numpy(), atol=1e-5)
    bad = model.arrays()
    bad["left"][0] = len(bad["left"])  # a child outside the trees
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(CheckpointError, match="not a tree array file"):
        TreeArrays(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a tree array file"):
        TreeArrays(tmp_path / "junk.npz")


def test_extremely_randomised_trees_are_other_trees_scored_as_lightgbm_scores_them() -> None:
    x, y = _rows(400, 0)
    kw = {"in_kind": "features", "n_classes": 2, "n_features": N, **TINY["lgbm"]}
    plain, extra = create_model("lgbm", **kw), create_model("lgbm", extra_trees=True, **kw)
    # without the option the parameters are those of before, so an older checkpoint's classifier is the same
    assert "extra_trees" not in plain.params
    for model in (plain, extra):
        model.fit(x, y, None, 0)
    booster = extra.classifier(0).fit(x, y).booster_
    assert booster.params["extra_trees"] is True
    test = _rows(100, 1)[0]
    with torch.no_grad():
        got = extra(torch.from_numpy(test))
        assert not torch.allclose(got, plain(torch.from_numpy(test)))
    margin = (got[:, 1] - got[:, 0]).numpy()
    np.testing.assert_allclose(margin, booster.predict(test, raw_score=True), atol=1e-4)


def test_path_smoothing_reaches_lightgbm_and_tempers_leaves_of_few_rows() -> None:
    x, y = _rows(400, 0)
    kw = {"in_kind": "features", "n_classes": 2, "n_features": N, **TINY["lgbm"]}
    plain, smooth = create_model("lgbm", **kw), create_model("lgbm", path_smooth=50.0, **kw)
    assert "path_smooth" not in plain.params  # an older checkpoint's classifier is the same
    for model in (plain, smooth):
        model.fit(x, y, None, 0)
    booster = smooth.classifier(0).fit(x, y).booster_
    assert booster.params["path_smooth"] == 50.0
    test = torch.from_numpy(_rows(100, 1)[0])
    with torch.no_grad():
        odds = [(m(test)[:, 1] - m(test)[:, 0]).numpy() for m in (plain, smooth)]
    assert np.abs(odds[1]).mean() < np.abs(odds[0]).mean()  # leaves pulled toward their parents' values
    np.testing.assert_allclose(odds[1], booster.predict(test.numpy(), raw_score=True), atol=1e-4)
    with pytest.raises(ModelError, match="path_smooth must be 0 or more"):
        create_model("lgbm", path_smooth=-1.0, **kw)


def test_bagged_boosters_score_the_mean_log_odds_of_their_seeds(tmp_path: Path) -> None:
    x, y = _rows(400, 0)
    kw = {"in_kind": "features", "n_classes": 2, "n_features": N, "extra_trees": True, **TINY["lgbm"]}
    bagged = create_model("lgbm", bags=3, **kw)
    steps: list[tuple[int, int]] = []
    bagged.fit(x, y, None, 5, on_step=lambda done, total: steps.append((done, total)))
    assert bagged.n_trees == 180 and steps[-1] == (180, 180) and [d for d, _ in steps] == list(range(1, 181))
    test = _rows(100, 1)[0]
    alone = [create_model("lgbm", **kw).classifier(5 + b).fit(x, y).booster_ for b in range(3)]
    mean = np.mean([b.predict(test, raw_score=True) for b in alone], axis=0)
    with torch.no_grad():
        got = bagged(torch.from_numpy(test))
    np.testing.assert_allclose((got[:, 1] - got[:, 0]).numpy(), mean, atol=1e-4)
    assert np.abs(mean - alone[0].predict(test, raw_score=True)).max() > 1e-2  # the seeds grow other trees
    path = save_checkpoint(
        tmp_path / "bagged.pt", bagged, model_name="lgbm", model_kwargs={"n_features": N, "bags": 3, **TINY["lgbm"],
        "extra_trees": True}, in_kind="features", n_classes=2, vocab_size=None, spec={"kind": "features"},
        classes=["benign", "malware"], seed=5, manifest_hash=None,
    )  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(path).model(torch.from_numpy(test)), got)
    with pytest.raises(ModelError, match="bags must be a positive integer"):
        create_model("lgbm", bags=0, **kw)


def test_bagged_boosters_can_each_learn_from_a_share_of_the_groups() -> None:
    x, y = _rows(400, 0)
    groups = [f"g{i % 40}" for i in range(400)]
    kw = {"in_kind": "features", "n_classes": 2, "n_features": N, "bags": 2, **TINY["lgbm"]}
    whole, shared = create_model("lgbm", **kw), create_model("lgbm", bag_groups=0.5, **kw)
    for model in (whole, shared):
        model.fit(x, y, None, 0, groups=groups)
    test = torch.from_numpy(_rows(100, 1)[0])
    with torch.no_grad():
        assert not torch.allclose(shared(test), whole(test))  # the boosters saw other rows
        assert ((shared(test)[:, 1] > shared(test)[:, 0]).numpy() == _rows(100, 1)[1]).mean() > 0.8
    # a booster on half of the groups: the first one's rows are those of the groups its seed drew
    kept = np.unique(np.asarray(groups)[shared._bag_rows(y, groups, 0)])
    assert 10 < len(kept) < 30 and set(kept) < set(groups)
    with pytest.raises(ModelError, match="needs each row's group"):
        create_model("lgbm", bag_groups=0.5, **kw).fit(x, y, None, 0)
    with pytest.raises(ModelError, match="bag_groups must be in"):
        create_model("lgbm", bag_groups=0.0, **kw)


@pytest.mark.parametrize("name", FITTED)
def test_bad_rows_and_inputs_are_model_errors(name: str) -> None:
    model = create_model(name, in_kind="features", n_classes=2, n_features=N, **TINY[name])
    with pytest.raises(ModelError, match="needs every class"):
        model.fit(np.zeros((10, N), np.float32), np.zeros(10, np.int64), None, 0)
    with pytest.raises(ModelError, match=rf"expects \(N, {N}\) rows"):
        model.fit(np.zeros((10, N + 1), np.float32), np.arange(10) % 2, None, 0)
    with pytest.raises(ModelError, match=rf"expects a float \(B, {N}\) tensor"):
        model(torch.rand(2, N + 1))
    with pytest.raises(ModelError, match="does not take 'image'"):
        create_model(name, in_kind="image", n_classes=2)
