"""Networks of one recipe as one model (``members``): built through the registry, trained member by member,
saved and loaded as one checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from malvision.checkpoint import load_checkpoint
from malvision.convert.spec import ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.data.readers import CsvDataset
from malvision.errors import ModelError
from malvision.models import create_model
from malvision.models.ensemble import Ensemble
from malvision.train import TrainConfig, fit


def test_an_ensemble_scores_the_mean_of_its_members_logits() -> None:
    torch.manual_seed(0)
    model = create_model("cnn", in_kind="image", n_classes=3, members=3).eval()
    assert isinstance(model, Ensemble) and len(model.members) == 3
    assert model.model_config["kwargs"] == {"members": 3}
    x = torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        each = torch.stack([m(x) for m in model.members])
        assert not torch.allclose(each[0], each[1])  # members start from their own weights
        assert torch.allclose(model(x), each.mean(0), atol=1e-6)
    assert model.cam_layer() is None  # no one convolutional layer: explanations use gradients of the input
    one = create_model("cnn", in_kind="image", n_classes=3, members=1)
    assert not isinstance(one, Ensemble) and "members" not in one.model_config["kwargs"]


@pytest.mark.parametrize(
    ("name", "kind", "members", "message"),
    [
        ("mlp", "features", 0, "members must be a whole number of at least 1"),
        ("mlp", "features", 1.5, "members must be a whole number of at least 1"),
        ("lgbm", "features", 2, "lgbm averages boosters with bags"),
        ("malconv", "bytes", 2, "ensembles take pictures and vectors"),
    ],
)
def test_members_that_cannot_be_are_refused(name: str, kind: str, members: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_model(name, in_kind=kind, n_classes=2, members=members)


@pytest.mark.slow
def test_members_train_as_runs_of_their_own_seeds_and_join_in_one_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(80):
        label = "malware" if i % 2 else "benign"
        data = rng.integers(0, 256 if label == "malware" else 64, 3000, dtype=np.uint8).tobytes()
        (tmp_path / f"{label}-{i}.bin").write_bytes(data)
        rows.append(f"{label}-{i}.bin,{label},g{i % 8}")
    (tmp_path / "labels.csv").write_text("path,label,group\n" + "\n".join(rows) + "\n")
    write_cache(CsvDataset(tmp_path / "labels.csv"), tmp_path / "cache", ConvertSpec(kind="histograms"))
    ds = CachedDataset(tmp_path / "cache")
    idx = np.arange(len(ds))
    cfg = TrainConfig(
        model="mlp", model_kwargs={"hidden": [8], "members": 2}, epochs=2, batch_size=16, seed=5
    )
    res = fit(ds, idx[:64], idx[64:], cfg, tmp_path / "run")
    ck = load_checkpoint(res.checkpoint)
    assert isinstance(ck.model, Ensemble) and ck.model_kwargs["members"] == 2
    members = [load_checkpoint(tmp_path / "run" / f"member{i}" / "best.pt") for i in range(2)]
    assert [m.seed for m in members] == [5, 6]  # each member its own seed: its own weights and batches
    x = torch.stack([torch.from_numpy(ds[i][0]) for i in idx[64:]])
    with torch.no_grad():
        each = torch.stack([m.model.eval()(x) for m in members])
        assert not torch.allclose(each[0], each[1])
        assert torch.allclose(ck.model.eval()(x), each.mean(0), atol=1e-6)
    assert "member" in (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    assert res.val_metrics["accuracy"] > 0.5
