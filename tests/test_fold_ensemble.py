"""scripts/fold_ensemble.py: the fold models of runs scored as one model, each through its run's Platt scaling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from malvision.checkpoint import save_checkpoint
from malvision.convert.spec import ConvertSpec
from malvision.errors import MalvisionError
from malvision.models import create_model
from repo_scripts import load_script


def _script():  # noqa: ANN202
    return load_script("fold_ensemble")


def test_each_fold_model_scores_through_its_runs_platt_scaling(tmp_path: Path) -> None:
    fold_logits = _script().fold_logits
    run = tmp_path / "run"
    (run / "cv-source").mkdir(parents=True)
    with pytest.raises(MalvisionError, match="no source fold models"):
        fold_logits(run, {"a": 2.0, "b": -1.0}, torch.zeros(1, 4))
    torch.manual_seed(0)
    models = []
    for k in range(2):
        model = create_model("mlp", in_kind="features", n_classes=2, n_features=4, hidden=(3,)).eval()
        (run / "cv-source" / f"fold{k}").mkdir()
        save_checkpoint(
            run / "cv-source" / f"fold{k}" / "best.pt", model, model_name="mlp",
            model_kwargs={"n_features": 4, "hidden": [3]}, in_kind="features", n_classes=2, vocab_size=None,
            spec=ConvertSpec(kind="features").to_dict(), classes=["benign", "malware"], seed=k, manifest_hash=None,
        )  # fmt: skip
        models.append(model)
    x = torch.randn(5, 4)
    got = fold_logits(run, {"a": 2.0, "b": -1.0}, x)
    assert got.shape == (2, 5)
    with torch.no_grad():
        for k, model in enumerate(models):
            logits = model(x)
            want = 2.0 * (logits[:, 1] - logits[:, 0]).double().numpy() - 1.0
            assert abs(got[k] - want).max() < 1e-5
    assert abs(got[0] - got[1]).max() > 1e-3  # each fold its own model
