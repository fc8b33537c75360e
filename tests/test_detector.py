"""The shipped-detector recipe on tiny synthetic data: group-disjoint CV, calibration, threshold, card."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from malvision.calibration import fit_class_offsets, fit_temperature
from malvision.checkpoint import load_checkpoint
from malvision.convert.spec import ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.data.readers import CsvDataset
from malvision.detector import build_detector
from malvision.errors import DatasetError
from malvision.evaluate.metrics import tpr_interval
from malvision.scan import Scanner
from malvision.train import TrainConfig


def test_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    # True probability of the label is 0.7, but the model claims 0.99: T > 1 softens it.
    correct = rng.random(2000) < 0.7
    pred = np.where(correct, labels, 1 - labels)
    probs = np.full((2000, 2), 0.01)
    probs[np.arange(2000), pred] = 0.99
    assert fit_temperature(np.log(probs), labels) > 2.0
    honest = np.full((2000, 2), 0.3)
    honest[np.arange(2000), pred] = 0.7
    assert 0.8 < fit_temperature(np.log(honest), labels) < 1.25
    # a split the model separates perfectly: NLL alone would sharpen without end (to the grid's 0.05)
    separable = np.full((100, 2), 0.01)
    separable[np.arange(100), labels[:100]] = 0.99
    assert 0.4 < fit_temperature(np.log(separable), labels[:100]) < 1.0


def test_class_offsets_undo_a_tilt_between_classes() -> None:
    rng = np.random.default_rng(0)
    honest = rng.normal(size=(3000, 3)) * 2.0
    labels = np.array([rng.choice(3, p=p) for p in np.exp(honest) / np.exp(honest).sum(1, keepdims=True)])
    tilt = np.array([1.5, -0.5, -1.0])
    fitted = fit_class_offsets(honest + tilt, labels)
    assert abs(fitted.sum()) < 1e-9 and np.allclose(fitted, -tilt, atol=0.2)
    assert np.allclose(fit_class_offsets(honest, labels), 0.0, atol=0.2)


def test_confident_scores_keep_their_order_as_the_scanner_sees_them() -> None:
    """Out-of-fold log-odds (logits, then temperature) rank very confident files as the scanner does."""
    import torch

    from malvision.calibration import log_odds, platt_scale
    from malvision.train import predict, predict_logits

    logits = torch.tensor([[0.0, 18.0], [0.0, 24.0], [0.0, 60.0], [0.0, 90.0], [0.0, 800.0], [0.0, -30.0]])
    batches = [(logits, torch.zeros(6, dtype=torch.long))]
    z, _ = predict_logits(torch.nn.Identity(), batches)
    probs, _ = predict(torch.nn.Identity(), batches)
    assert np.allclose(probs, torch.softmax(logits.double(), dim=1).numpy())
    for t in (0.5, 1.0, 2.5):
        ours = log_odds(z, 1, t)
        assert np.all(np.diff(ours[:5]) > 0)  # a probability would tie 60, 90 and 800 (float32: all five)
    platt = {"a": 0.2, "b": -2.0}
    scores = platt_scale(log_odds(z, 1, 0.5), platt)
    assert np.all(np.diff(scores[:4]) > 0) and 0 < scores[5] < scores[0] < scores[3] <= 1


def test_temperature_sees_how_wrong_a_confident_mistake_is() -> None:
    """Clipped probabilities would cap a mistake's cost at -log(1e-12); logits keep all of it."""
    labels = np.array([0] * 50 + [1] * 50)
    logits = np.zeros((100, 2))
    logits[np.arange(100), labels] = 6.0  # right, and sure of it
    mild = logits.copy()
    mild[0] = [0.0, 30.0]  # one file wrong at a logit gap of 30
    wild = logits.copy()
    wild[0] = [0.0, 300.0]  # the same file, wrong at a gap of 300
    assert fit_temperature(wild, labels) > 1.5 * fit_temperature(mild, labels)


def _grouped_set(base: Path, suffix: str, make: Callable[[str, int, int], bytes]) -> CsvDataset:
    """6 groups of 5 files per class, ``make(label, group, index)`` giving each file's bytes; the malware
    groups come from 3 collections, two groups each."""
    rows = ["file,label,group,collection"]
    for label in ("benign", "malware"):
        for g in range(6):
            for i in range(5):
                name = f"{label}-{g}-{i}{suffix}"
                (base / name).write_bytes(make(label, g, i))
                rows.append(
                    f"{name},{label},{label}{g},{'repo' + 'ABC'[g // 2] if label == 'malware' else ''}"
                )
    (base / "labels.csv").write_text("\n".join(rows) + "\n")
    return CsvDataset(base / "labels.csv", group_column="group", collection_column="collection")


@pytest.fixture(scope="module")
def grouped_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small PEs with a payload after them, low-entropy for benign and high-entropy for malware; 6 groups
    of 5 files per class."""
    from corpus import minimal_pe

    base = tmp_path_factory.mktemp("det")
    rng = np.random.default_rng(1)

    def make(label: str, g: int, i: int) -> bytes:
        n = int(rng.integers(4000, 9000))
        payload = rng.integers(0, 256 if label == "malware" else 8, n, dtype=np.uint8) * (1 + g % 2)
        return minimal_pe(0x200, 0x200, seed=g * 10 + i) + payload.tobytes()

    write_cache(_grouped_set(base, ".bin", make), base / "cache", ConvertSpec(kind="image", image_size=16))
    return base / "cache"


@pytest.mark.slow
def test_build_detector_writes_an_honest_card(grouped_cache: Path, tmp_path: Path) -> None:
    ds = CachedDataset(grouped_cache)
    cfg = TrainConfig(model="cnn", model_kwargs={"channels": [8, 16]}, epochs=3, batch_size=8, lr=5e-3)
    card = build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05, command="test")
    m = card["metrics"]
    assert m["fpr_at_threshold"] <= 0.05  # the threshold keeps the target on out-of-fold benign scores
    assert m["roc_auc"] > 0.9  # entropy separates the classes even across unseen groups
    assert set(m["operating_points"]) == {"0.001", "0.01", "0.05"}
    for point in m["operating_points"].values():
        lo, hi = point["tpr_ci95"]
        assert 0 <= lo <= hi <= 1
    assert m["tpr_ci95"] == m["operating_points"]["0.05"]["tpr_ci95"]
    assert card["platt"]["a"] > 0  # Platt scaling keeps the order of scores
    assert card["data"]["counts"] == {"benign": 30, "malware": 30}
    assert card["input"] == "image of size 16"  # what a board shows: the side (and tiles) beside the kind
    # where the files came from: the benign files by folder (the CSV's), the malware by collection
    assert card["data"]["sources"] == {
        str(grouped_cache.parent): {"files": {"benign": 30}, "registries": {}},
        **{f"collection repo{c}": {"files": {"malware": 10}, "registries": {}} for c in "ABC"},
    }
    assert len(card["training_sha256"]) == 60 and card["temperature"] > 0
    oof = json.loads((tmp_path / "run" / "oof_scores.json").read_text())
    assert len(oof["score"]) == 60 and all(0 <= s <= 1 for s in oof["score"])
    ck = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ck.extra["card"]["threshold"] == card["threshold"]
    scanner = Scanner(tmp_path / "run" / "model.pt")
    assert scanner.threshold == card["threshold"] and scanner.temperature == card["temperature"]
    assert Scanner(tmp_path / "run" / "model.pt", threshold=0.3).threshold == 0.3
    assert (tmp_path / "run" / "roc.png").stat().st_size > 1000
    # per-family results, as `malvision info --groups --markdown` prints them
    from typer.testing import CliRunner

    from malvision.cli import app

    r = CliRunner().invoke(app, ["info", str(tmp_path / "run" / "model.pt"), "--groups", "--markdown"])
    assert r.exit_code == 0, r.output
    rows = [line for line in r.output.splitlines() if line.startswith("| malware |")]
    assert len(rows) == 6 and all(line.count("|") == 6 for line in rows)
    flagged = sum(int(line.split("|")[4]) for line in rows)
    assert flagged == card["metrics"]["detected"]
    # the plain card: operating points as a table, the card's own marked, with their intervals
    r = CliRunner().invoke(app, ["info", str(tmp_path / "run" / "model.pt")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    (own,) = [line for line in r.output.splitlines() if "5% (card)" in line]
    lo, hi = m["tpr_ci95"]
    assert f"{m['detected']} = {m['tpr_at_threshold']:.1%}" in own and f"{lo:.1%} to {hi:.1%}" in own
    assert "operating_points" not in r.output  # not dumped as JSON as well
    # the threshold's own interval (benign projects redrawn), in the card and in the table
    t_lo, t_hi = m["operating_points"]["0.05"]["threshold_ci95"]
    assert card["threshold_ci95"] == [t_lo, t_hi] and t_lo <= card["threshold"] <= t_hi
    assert f"{t_lo:.4f} to {t_hi:.4f}" in own
    # the script that splits the bootstrap by benign project reproduces the card's interval
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "scripts" / "interval_drivers.py"
    run = subprocess.run(
        [sys.executable, script, tmp_path / "run", grouped_cache], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert f"95% interval {lo:.3f} to {hi:.3f}" in run.stdout and "| benign project |" in run.stdout
    run = subprocess.run([sys.executable, script, tmp_path, grouped_cache], capture_output=True, text=True)
    assert (
        run.returncode == 1
        and run.stderr.count("\n") == 1
        and "not a `malvision train-detector` run" in run.stderr
    )


@pytest.fixture(scope="module")
def pe_feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid small PEs: benign ones end at their last section, malware carries a random overlay."""
    from corpus import minimal_pe

    base = tmp_path_factory.mktemp("pefeat")
    rng = np.random.default_rng(2)

    def make(label: str, g: int, i: int) -> bytes:
        data = minimal_pe(0x200 * int(rng.integers(2, 9)), 0x200 * int(rng.integers(1, 5)), seed=g * 10 + i)
        if label == "malware":
            data += rng.integers(0, 256, int(rng.integers(4000, 12000)), dtype=np.uint8).tobytes()
        return data

    write_cache(_grouped_set(base, ".exe", make), base / "cache", ConvertSpec(kind="features"))
    return base


@pytest.mark.parametrize(
    ("model", "kwargs", "method"),
    [
        ("mlp", {"hidden": [16]}, "ig"),
        ("mlp", {"hidden": [16], "members": 2}, "ig"),
        ("gbt", {"n_trees": 30, "max_depth": 3}, "occlusion"),
    ],
)
@pytest.mark.slow
def test_a_features_detector_trains_scans_and_exports(
    pe_feature_cache: Path, tmp_path: Path, model: str, kwargs: dict, method: str
) -> None:
    from malvision.export import PARITY_ATOL, export_onnx
    from malvision.scan import Verdict

    ds = CachedDataset(pe_feature_cache / "cache")
    assert ds[0][0].dtype == np.float32 and ds[0][0].ndim == 1
    # 20 epochs: at 12 the MLP on one thread (as in the whole suite) stopped at ROC-AUC 0.90 in one fold set
    cfg = TrainConfig(model=model, model_kwargs=kwargs, epochs=20, batch_size=8, lr=1e-2)
    card = build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05, command="test")
    assert card["metrics"]["roc_auc"] > 0.9  # the overlay gives malware away, across unseen groups
    path = tmp_path / "run" / "model.pt"
    assert export_onnx(path)["max_abs_diff"] < PARITY_ATOL
    import pip

    launchers = sorted(Path(pip.__file__).parent.joinpath("_vendor", "distlib").glob("*.exe"))  # real PEs
    files = [pe_feature_cache / f"{label}-0-{i}.exe" for label in ("benign", "malware") for i in range(5)]
    torch_v = [v for v in Scanner(path, backend="torch").scan(files + launchers) if isinstance(v, Verdict)]
    onnx_v = [v for v in Scanner(path, backend="onnx").scan(files + launchers) if isinstance(v, Verdict)]
    assert len(torch_v) == len(onnx_v) == 10 + len(launchers)
    for a, b in zip(torch_v, onnx_v, strict=True):
        assert a.score is not None and b.score is not None and abs(a.score - b.score) < PARITY_ATOL
    benign, malware = [v.score for v in torch_v[:5]], [v.score for v in torch_v[5:]]
    assert min(malware) > max(benign)  # type: ignore[type-var]
    from malvision.explain import explain_bytes

    expl = explain_bytes(Scanner(path, backend="torch"), "x.exe", files[5].read_bytes(), target="malware")
    assert expl.unit == "feature" and len(expl.features) == 5 and expl.verdict.score == torch_v[5].score
    assert expl.method == method and expl.features[0].attribution != 0
    if model == "gbt":  # occlusion: the top feature set to its typical value moves the log-odds by that much
        import torch

        from malvision.convert.pefeatures import FEATURE_NAMES, features_of

        net = load_checkpoint(path).model.eval()
        x = torch.from_numpy(features_of(files[5].read_bytes()))[None]
        top = expl.features[0]
        moved = x.clone()
        moved[0, FEATURE_NAMES.index(top.name)] = top.typical
        odds = [float(net(t)[0, 1] - net(t)[0, 0]) for t in (x, moved)]
        assert abs(odds[0] - odds[1] - top.attribution) < 1e-4


def test_trees_train_on_every_row_of_a_fold(pe_feature_cache: Path, tmp_path: Path) -> None:
    """A model fitted in one call has no epoch to pick: no validation rows are held back from it."""
    from malvision.evaluate.leaderboard import run_fold

    ds = CachedDataset(pe_feature_cache / "cache")
    idx = np.arange(len(ds))
    train, test = idx[idx % 4 != 0], idx[idx % 4 == 0]
    kw = {"n_trees": 20, "max_depth": 3}
    trees = run_fold(ds, TrainConfig(model="gbt", model_kwargs=kw), train, test, tmp_path / "gbt")
    assert trees["n_train"] == len(train) and trees["n_val"] == 0 and trees["n_test"] == len(test)
    assert trees["metrics"]["accuracy"] > 0.8  # the overlay gives malware away
    mlp = run_fold(ds, TrainConfig(model="mlp", epochs=1), train, test, tmp_path / "mlp")
    assert mlp["n_val"] > 0 and mlp["n_train"] + mlp["n_val"] == len(train)
    # `malvision train`: the same, with a held-out test split, plots and metrics, and no training curves
    from malvision.evaluate.holdout import train_run

    summary = train_run(ds, TrainConfig(model="gbt", model_kwargs=kw), tmp_path / "run", test_size=0.25)
    assert summary["n_val"] == 0 and summary["n_train"] + summary["n_test"] == len(ds)
    assert (tmp_path / "run" / "confusion.png").exists() and not (tmp_path / "run" / "curves.png").exists()


def test_trees_learn_with_group_weights_and_models_trained_by_epochs_refuse_them(
    pe_feature_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``group_power`` reaches a tree model's fit as per-row weights (each benign project of the fold
    weighing alike at 1); a model trained by gradient steps has no per-row weights and says so."""
    from malvision.errors import MalvisionError
    from malvision.models.trees import GradientBoostedTrees
    from malvision.train import fit

    ds = CachedDataset(pe_feature_cache / "cache")
    groups = np.asarray(ds.groups)
    idx = np.arange(len(ds))
    train = idx[(groups != "benign0") | (idx % 5 == 0)]  # benign0 keeps 1 file, the others 5
    seen: list[np.ndarray] = []
    grow = GradientBoostedTrees.fit

    def spy(self: GradientBoostedTrees, x, y, sample_weight, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(np.asarray(sample_weight))
        return grow(self, x, y, sample_weight, *args, **kwargs)

    monkeypatch.setattr(GradientBoostedTrees, "fit", spy)
    kw = {"n_trees": 5, "max_depth": 2}
    fit(ds, train, train[:0], TrainConfig(model="gbt", model_kwargs=kw, group_power=1.0), tmp_path / "gbt")
    w, y, g = seen[0], ds.labels[train], groups[train]
    benign = y == ds.classes.index("benign")
    sums = [w[benign & (g == k)].sum() for k in np.unique(g[benign])]
    assert len(sums) == 6 and np.allclose(sums, sums[0])
    assert len(set(w[~benign].tolist())) == 1  # malware: its class weight only
    with pytest.raises(
        MalvisionError, match="group_power and type_power weigh the rows of a model fitted in one call"
    ):
        fit(ds, train, train[:4], TrainConfig(model="mlp", epochs=1, group_power=0.5), tmp_path / "mlp")


@pytest.mark.slow
def test_a_run_folder_is_reused_only_by_the_same_run(pe_feature_cache: Path, tmp_path: Path) -> None:
    """Fold results left in a run folder are reused by the same run, and refused for other data or settings."""
    from malvision.errors import MalvisionError
    from malvision.evaluate.holdout import train_run

    ds = CachedDataset(pe_feature_cache / "cache")
    cfg = TrainConfig(model="gbt", model_kwargs={"n_trees": 10, "max_depth": 2})
    said: list[str] = []
    first = build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05, on_progress=said.append)
    assert {"group fold 1/3: 10%", "group fold 3/3: 100%", "final model: 100%"} <= set(said)  # a step a tree
    fold0 = tmp_path / "run" / "cv" / "fold0" / "scores.npy"
    stamp = fold0.stat().st_mtime_ns
    again = build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05)
    assert fold0.stat().st_mtime_ns == stamp and again["metrics"] == first["metrics"]  # reused, not redone
    assert "warning" not in first  # 30 benign files measure a 5% rate
    # A run stamped by an older malvision (no "conversion", another --threads) is the same run: reused, and
    # stamped anew so the next rerun is checked against everything
    run_json = tmp_path / "run" / "run.json"
    old = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({k: v for k, v in old.items() if k != "conversion"}))
    build_detector(
        ds, TrainConfig(**{**cfg.__dict__, "threads": 1}), tmp_path / "run", folds=3, target_fpr=0.05
    )
    assert fold0.stat().st_mtime_ns == stamp and "conversion" in json.loads(run_json.read_text())
    strict = build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.001)
    assert strict["warning"].startswith("30 benign files cannot measure a 0.10% false-positive rate")
    with pytest.raises(MalvisionError, match=r"other data or settings \(train_config\.seed\)"):
        build_detector(  # group folds only: seed 1 cannot spread these few benign groups over 3 sources
            ds, TrainConfig(model="gbt", model_kwargs=cfg.model_kwargs, seed=1), tmp_path / "run", folds=3,
            protocols=("group",),
        )  # fmt: skip
    # The same files converted another way (histograms): the same manifest, another cache.
    hist = tmp_path / "hist"
    write_cache(CsvDataset(pe_feature_cache / "labels.csv", group_column="group", collection_column="collection"),
                hist, ConvertSpec(kind="histograms"))  # fmt: skip
    other = CachedDataset(hist)
    assert other.manifest_hash == ds.manifest_hash
    hist_cfg = TrainConfig(model="mlp", epochs=1)
    with pytest.raises(MalvisionError, match=r"other data or settings \(the cache's conversion"):
        build_detector(other, hist_cfg, tmp_path / "run", folds=3, target_fpr=0.05)
    train_run(ds, hist_cfg, tmp_path / "by-kind", test_size=0.25)
    with pytest.raises(MalvisionError, match="holds a run on another cache"):
        train_run(other, hist_cfg, tmp_path / "by-kind", test_size=0.25, resume=True)
    (tmp_path / "by-kind" / "data.json").unlink()  # a folder from before data.json: its last.pt says
    with pytest.raises(MalvisionError, match="was trained on features input, this cache is histograms"):
        train_run(other, hist_cfg, tmp_path / "by-kind", test_size=0.25, resume=True)
    ds.manifest_hash = "0" * 64  # the same folder, another data set
    with pytest.raises(MalvisionError, match=r"other data or settings \(the data\)"):
        build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05)
    (tmp_path / "run" / "run.json").write_text("{not json")
    with pytest.raises(MalvisionError, match="run.json: unreadable"):
        build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05)
    (tmp_path / "run" / "run.json").unlink()  # fold results no run claims (an older release's folder)
    with pytest.raises(MalvisionError, match="fold results of an unknown run"):
        build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05)
    # `malvision train --resume` on a folder trained on other data: trees, and a model trained by epochs
    for c in (cfg, TrainConfig(model="mlp", epochs=1)):
        train_run(CachedDataset(pe_feature_cache / "cache"), c, tmp_path / c.model, test_size=0.25)
        with pytest.raises(MalvisionError, match="holds a run on another cache"):
            train_run(ds, c, tmp_path / c.model, test_size=0.25, resume=True)
        (tmp_path / c.model / "data.json").unlink()  # a folder from before data.json: the checkpoint says
        with pytest.raises(MalvisionError, match="was trained on other data"):
            train_run(ds, c, tmp_path / c.model, test_size=0.25, resume=True)


def _clustered_scores(n_groups: int, per_group: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Scores whose groups differ: each group has its own mean, so files within one move together."""
    rng = np.random.default_rng(seed)
    y, score, groups = [], [], []
    for c, centre in ((0, 0.0), (1, 2.0)):
        for g in range(n_groups):
            mean = centre + rng.normal(0, 1.0)
            score += list(mean + rng.normal(0, 0.1, per_group))
            y += [c] * per_group
            groups += [f"{c}-{g}"] * per_group
    return np.array(y), np.array(score), np.array(groups)


def test_tpr_interval_covers_the_figure_and_counts_groups_not_files() -> None:
    y, score, groups = _clustered_scores(n_groups=20, per_group=10)
    thr = np.sort(score[y == 0])[::-1][int(0.1 * (y == 0).sum())]
    point = float((score[y == 1] > thr).mean())
    lo, hi = tpr_interval(y, score, groups, 0.1, n_boot=500)
    assert lo < point < hi
    # treating every file as its own group claims far more certainty than the data holds
    lo1, hi1 = tpr_interval(y, score, np.arange(len(y)), 0.1, n_boot=500)
    assert hi1 - lo1 < (hi - lo) / 2
    # more groups, a narrower interval; the same seed, the same interval
    lo_w, hi_w = tpr_interval(*_clustered_scores(n_groups=200, per_group=10), 0.1, n_boot=500)
    assert hi_w - lo_w < hi - lo
    assert tpr_interval(y, score, groups, 0.1, n_boot=500) == (lo, hi)


def test_tpr_interval_of_separated_classes_is_a_point() -> None:
    y = np.array([0] * 50 + [1] * 50)
    score = np.where(y == 1, 5.0, 0.0) + np.linspace(0, 1, 100)
    assert tpr_interval(y, score, np.arange(100) // 5, 0.01, n_boot=200) == (1.0, 1.0)
    with pytest.raises(ValueError, match="needs both classes"):
        tpr_interval(np.zeros(10), score[:10], np.arange(10), 0.01)


@pytest.mark.slow
def test_the_card_carries_both_protocols_per_collection_and_per_type(
    pe_feature_cache: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from malvision.cli import app

    ds = CachedDataset(pe_feature_cache / "cache")
    assert sorted({c for c in ds.collections if c}) == ["repoA", "repoB", "repoC"]
    cfg = TrainConfig(model="gbt", model_kwargs={"n_trees": 20, "max_depth": 2})
    card = build_detector(ds, cfg, tmp_path / "run", folds=3, target_fpr=0.05)
    assert list(card["protocols"]) == ["source", "group"]  # the source-disjoint one is the card's own
    source = card["protocols"]["source"]
    assert card["metrics"] == source and card["threshold"] == source["threshold"]
    assert "one fold per malware collection (repoA, repoB, repoC)" in card["split"]
    assert len(list((tmp_path / "run" / "cv-source").glob("fold*/scores.npy"))) == 3
    assert len(list((tmp_path / "run" / "cv").glob("fold*/scores.npy"))) == 3
    per = source["per_collection"]
    assert set(per) == {"repoA", "repoB", "repoC"} and all(v["n"] == 10 for v in per.values())
    for v in per.values():
        lo, hi = v["tpr_at_0.01_ci95"]
        assert 0 <= lo <= v["tpr_at_0.01"] <= hi <= 1
    types = source["per_type"]
    assert sum(t["malware"] for t in types.values()) == 30 and sum(t["benign"] for t in types.values()) == 30
    assert sum(t["detected"] for t in types.values()) == source["detected"]
    r = CliRunner().invoke(app, ["info", str(tmp_path / "run" / "model.pt")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "per malware collection" in r.output and "repoB" in r.output and "file type" in r.output
    assert '"per_collection"' not in r.output  # a table, not JSON


@pytest.mark.slow
def test_compare_detectors_on_the_same_folds(pe_feature_cache: Path, tmp_path: Path) -> None:
    """Two models' source-disjoint runs side by side, file by file; runs on other folds are refused."""
    from typer.testing import CliRunner

    from malvision.cli import app
    from malvision.errors import MalvisionError
    from malvision.evaluate.board import compare, read_run

    ds = CachedDataset(pe_feature_cache / "cache")
    for model, kw in (("gbt", {"n_trees": 20, "max_depth": 2}), ("linear", {})):
        cfg = TrainConfig(model=model, model_kwargs=kw)
        build_detector(ds, cfg, tmp_path / model, target_fpr=0.05, protocols=("source",))
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    for i, f in enumerate(sorted(pe_feature_cache.glob("benign-0-*.exe"))):
        (heldout / f"h{i}.exe").write_bytes(f.read_bytes())
    r = CliRunner().invoke(
        app, ["compare-detectors", str(tmp_path / "gbt"), str(tmp_path / "linear"), "-o", str(tmp_path / "board"),
              "--heldout", str(heldout), "--speed-files", "3"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = [
        line for line in (tmp_path / "board" / "board.md").read_text().splitlines() if line.startswith("| ")
    ]
    assert len(rows) == 3 and {"gbt", "linear"} <= {c.strip() for row in rows[1:] for c in row.split("|")}
    assert all(" of 5 |" in row for row in rows[1:])  # the held-out benign files, scanned by each model
    assert (tmp_path / "board" / "roc.png").stat().st_size > 1000
    board = json.loads((tmp_path / "board" / "board.json").read_text())
    assert all(b["n_files"] == 60 and b["report"]["per_collection"] for b in board)
    run = read_run(tmp_path / "gbt")
    other = read_run(tmp_path / "linear")
    other.fold = (other.fold + 1) % 3  # the same files in other folds
    with pytest.raises(MalvisionError, match="not the same folds"):
        compare([run, other])
    with pytest.raises(MalvisionError, match="not a detector run folder"):
        read_run(tmp_path / "board")


def test_evaluate_calls_a_detectors_files_as_scan_does(pe_feature_cache: Path, tmp_path: Path) -> None:
    """A card with a temperature, a Platt map and a threshold: evaluate's confusion matrix counts the
    verdicts `scan` gives the same files, not the most probable class of the raw softmax."""
    import torch

    from malvision.card import save_with_card
    from malvision.checkpoint import save_checkpoint
    from malvision.evaluate.runner import evaluate_checkpoint
    from malvision.models import create_model

    torch.manual_seed(0)
    model = create_model("mlp", in_kind="features", n_classes=2, hidden=[8])
    raw = save_checkpoint(
        tmp_path / "raw.pt", model, model_name="mlp", model_kwargs={"hidden": [8]}, in_kind="features",
        n_classes=2, vocab_size=None, spec=ConvertSpec(kind="features").to_dict(),
        classes=["benign", "malware"], seed=0, manifest_hash=None,
    )  # fmt: skip
    ds = CachedDataset(pe_feature_cache / "cache")
    files = sorted(p for p in pe_feature_cache.glob("*.exe"))

    def carded(threshold: float) -> Path:
        card = {"temperature": 2.0, "platt": {"a": 1.5, "b": -0.3}, "threshold": threshold}
        return save_with_card(load_checkpoint(raw), tmp_path / "carded.pt", card)

    with Scanner(carded(0.5), backend="torch", workers=1) as s:
        scores = np.array([v.score for v in s.scan(files)])
    threshold = float(np.quantile(scores, 0.3))  # the card's scores: a threshold that flags 70%
    with Scanner(carded(threshold), backend="torch", workers=1) as s:
        verdicts = {Path(v.path).name: v.verdict for v in s.scan(files)}
    m = evaluate_checkpoint(load_checkpoint(tmp_path / "carded.pt"), ds)
    truth = {Path(r.source).name: r.label for r in ds.records}
    classes = ("benign", "malware")
    want = [[sum(truth[f] == a and verdicts[f] == b for f in truth) for b in classes] for a in classes]
    assert m["confusion_matrix"] == want and m["threshold"] == threshold
    assert sum(want[0]) == sum(want[1]) and sum(r[1] for r in want) >= 0.6 * len(files)


def test_a_resumed_features_run_shuffles_as_the_uninterrupted_one(
    pe_feature_cache: Path, tmp_path: Path
) -> None:
    """Fixed-shape rows are shuffled by the loader's own generator: its state goes into last.pt too."""
    import torch

    from malvision.train import fit

    ds = CachedDataset(pe_feature_cache / "cache")
    idx = np.arange(len(ds))
    cfg = TrainConfig(
        model="mlp", model_kwargs={"hidden": [16]}, epochs=4, batch_size=8, seed=5, patience=9, keep="last"
    )
    whole = fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "whole")

    def stop(row: dict[str, float]) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "cut", on_epoch=stop)
    resumed = fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "cut", resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    a, b = (
        load_checkpoint(whole.checkpoint).model.state_dict(),
        load_checkpoint(resumed.checkpoint).model.state_dict(),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_card_says_when_its_benign_files_cannot_measure_its_rate() -> None:
    from malvision.detector import _too_few_benign

    assert _too_few_benign(23_331, 0.001) == {} and _too_few_benign(1000, 0.001) == {}
    (text,) = _too_few_benign(39, 0.001).values()
    assert text.startswith("39 benign files cannot measure a 0.10% false-positive rate (one file is 2.56%")
    assert "it takes 1,000" in text


def test_files_scan_calls_unknown_count_as_it_does(tmp_path: Path) -> None:
    """A truncated PE gets the verdict unknown from a scan, not a score: the cache records why, the card
    counts such malware as missed and such benign files as no false positive, and a board applies the
    rule to a run whose scores do not record it."""
    from corpus import minimal_pe
    from malvision.evaluate.board import compare, read_run
    from malvision.evaluate.detection import UNSCORED

    rng = np.random.default_rng(3)
    cut = {("malware", 0, 0), ("malware", 0, 1), ("benign", 1, 0)}

    def make(label: str, g: int, i: int) -> bytes:
        data = minimal_pe(0x200 * int(rng.integers(2, 9)), 0x200 * int(rng.integers(1, 5)), seed=g * 10 + i)
        if (label, g, i) in cut:
            return data[:-0x300]  # the last section runs past the end
        if label == "malware":
            data += rng.integers(0, 256, int(rng.integers(4000, 12000)), dtype=np.uint8).tobytes()
        return data

    write_cache(_grouped_set(tmp_path, ".exe", make), tmp_path / "cache", ConvertSpec(kind="features"))
    ds = CachedDataset(tmp_path / "cache")
    names = [Path(r.source).name for r in ds.records]
    unknown = {n for n, r in zip(names, ds.records, strict=True) if r.unknown is not None}
    assert ds.triaged and unknown == {"malware-0-0.exe", "malware-0-1.exe", "benign-1-0.exe"}
    assert all(r.unknown.startswith("truncated PE") for r in ds.records if r.unknown)
    with Scanner("default", workers=1) as s:  # the shipped default reads features too
        said = {Path(v.path).name for v in s.scan([tmp_path / n for n in names]) if v.verdict == "unknown"}
    assert said == unknown  # what the cache records is what a scan says

    cfg = TrainConfig(model="gbt", model_kwargs={"n_trees": 20, "max_depth": 2})
    card = build_detector(ds, cfg, tmp_path / "run", target_fpr=0.05, protocols=("source",))
    assert card["unscored"]["malware"] == 2 and card["unscored"]["benign"] == 1
    assert card["unscored"]["reasons"] == {"truncated PE": 3}
    oof = json.loads((tmp_path / "run" / "oof_scores.json").read_text())
    score = dict(zip(names, oof["score"], strict=True))
    assert {n for n, v in score.items() if v == UNSCORED} == unknown
    assert card["metrics"]["detected"] <= 28  # the two truncated malware files are missed
    assert card["metrics"]["roc_auc_of"].startswith("the 57 files a scan scores")
    from malvision.evaluate.runner import evaluate_checkpoint

    m = evaluate_checkpoint(load_checkpoint(tmp_path / "run" / "model.pt"), ds)  # its own files: the rule
    assert m["unscored"]["malware"] == 2 and m["tpr_at_1pct_fpr"] <= 28 / 30  # the two never flagged
    assert m["roc_auc_of"].startswith("the 57 files") and m["confusion_matrix"][1][1] <= 28
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "scripts" / "unscored_effect.py"
    run = subprocess.run(
        [sys.executable, script, tmp_path / "run"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "2 of 30 malware and 1 of 30 benign files" in run.stdout
    (now,) = [line for line in run.stdout.splitlines() if line.startswith("| as a scan counts them")]
    assert f"| {card['metrics']['detected']} = " in now  # the card's own figure, recomputed

    baseline = tmp_path / "baseline"  # a run whose scores do not record what a scan calls unknown
    baseline.mkdir()
    raw = dict(oof, score=[0.99 if v == UNSCORED else v for v in oof["score"]])
    del raw["unknown"]
    (baseline / "oof_scores.json").write_text(json.dumps(raw))
    (baseline / "card.json").write_text((tmp_path / "run" / "card.json").read_text())
    rows = compare([read_run(tmp_path / "run"), read_run(baseline)])
    assert rows[0]["report"]["detected"] == rows[1]["report"]["detected"] == card["metrics"]["detected"]


def test_a_format_2_cache_reads_without_the_unknown_column(pe_feature_cache: Path, tmp_path: Path) -> None:
    import hashlib
    import shutil

    old = tmp_path / "old"
    shutil.copytree(pe_feature_cache / "cache", old)
    lines = (old / "manifest.csv").read_text().splitlines()
    manifest = "".join(line.rsplit(",", 1)[0] + "\n" for line in lines).encode()
    (old / "manifest.csv").write_bytes(manifest)
    meta = json.loads((old / "meta.json").read_text())
    meta |= {"format_version": 2, "manifest_hash": hashlib.sha256(manifest).hexdigest()}
    (old / "meta.json").write_text(json.dumps(meta))
    ds = CachedDataset(old)
    assert not ds.triaged and len(ds) == 60 and all(r.unknown is None for r in ds.records)
    assert ds.records[0].pe_type == CachedDataset(pe_feature_cache / "cache").records[0].pe_type
    from malvision.bundled import resolve_checkpoint
    from malvision.evaluate.runner import caveats, evaluate_checkpoint

    m = evaluate_checkpoint(load_checkpoint(resolve_checkpoint("default")), ds)
    assert m["unscored"]["recorded"] is False and "predates format 3" in caveats(m)[0]


def test_a_detector_of_files_scan_never_scores_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)

    def make(label: str, g: int, i: int) -> bytes:  # random bytes: not PE files, so scan calls them unknown
        return rng.integers(0, 256 if label == "malware" else 8, 3000, dtype=np.uint8).tobytes()

    write_cache(
        _grouped_set(tmp_path, ".bin", make), tmp_path / "cache", ConvertSpec(kind="image", image_size=16)
    )
    cfg = TrainConfig(model="cnn", model_kwargs={"channels": [4]}, epochs=1)
    with pytest.raises(DatasetError, match="a scan scores none of the benign files .*not a Windows PE file"):
        build_detector(CachedDataset(tmp_path / "cache"), cfg, tmp_path / "run", folds=3)
    assert not (tmp_path / "run").exists()  # refused before anything is written
