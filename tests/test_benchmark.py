"""``benchmark``: named rows, ensemble rows, per-class tables, ``--full``; a model shipped on every sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from malvision.checkpoint import load_checkpoint
from malvision.cli import app
from malvision.convert.spec import ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.data.detect import open_dataset
from malvision.errors import MalvisionError
from test_experiments import make_opcode_tree

runner = CliRunner()
TINY_MALCONV = ["--set", "malconv.window=4", "--set", "malconv.stride=2", "--set", "malconv.channels=4",
                "--set", "malconv.hidden=4", "--set", "malconv.embed_dim=4"]  # fmt: skip


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same opcode tree as a whole-sample cache and as one cut at 64 opcodes."""
    base = tmp_path_factory.mktemp("ops")
    tree = make_opcode_tree(base / "tree")
    for name, n in (("whole", 1000), ("cut", 64)):
        with open_dataset(tree) as raw:
            write_cache(raw, base / name, ConvertSpec(kind="opcodes", max_len=n))
    return base / "whole", base / "cut"


def _bench(data: Path, out: Path, *args: str) -> object:
    return runner.invoke(app, ["benchmark", "-d", str(data), "-o", str(out), "--folds", "2", "--epochs", "1",
                               "--grouped", "no", *args])  # fmt: skip


def test_full_leaderboard_has_ablation_and_ensemble_rows(caches: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "lb"
    r = _bench(caches[0], out, "--full", "--models", "ngram,uni=ngram,malconv", "--set", "uni.n_max=1",
               "--ensemble", "ngram+malconv", *TINY_MALCONV)  # fmt: skip
    assert r.exit_code == 0, r.output
    table = (out / "stratified" / "leaderboard.md").read_text()
    for row in ("ngram", "uni", "malconv", "ngram+malconv"):
        assert f"| {row} |" in table
    assert "Per class, all folds pooled" in table and "alpha (24)" in table
    rows = {r["model"]: r for r in json.loads((out / "stratified" / "leaderboard.json").read_text())}
    assert rows["uni"]["model_kwargs"] == {"n_max": 1}
    assert json.loads((out / "stratified" / "uni" / "fold0" / "config.json").read_text())["name"] == "uni"
    ens = rows["ngram+malconv"]
    assert ens["members"] == ["ngram", "malconv"]
    assert ens["infer_ms_per_sample"] == pytest.approx(
        rows["ngram"]["infer_ms_per_sample"] + rows["malconv"]["infer_ms_per_sample"]
    )
    assert sum(v["support"] for v in ens["per_class"].values()) == 72
    assert rows["ngram"]["params"] > 0  # a fitted model counts what it learned
    assert (out / "stratified" / "ngram+malconv" / "confusion.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("which", "args", "message"),
    [
        (0, ["--full", "--models", "cnn"], "cnn read a prefix"),
        (1, ["--full", "--models", "ngram"], "cuts samples at 64 tokens"),
        (0, ["--full", "--models", "ngram", "--set", "ngram.max_len=10"], "drop max_len for ngram"),
        (0, ["--models", "ngram", "--ensemble", "ngram+gru"], "no row named gru"),
        (0, ["--models", "ngram,ngram"], "share a name"),
        (0, ["--models", "ngram", "--set", "gru.hidden=3"], "--set names no row: gru"),
    ],
)
def test_benchmark_refuses_in_one_line(
    caches: tuple[Path, Path], tmp_path: Path, which: int, args: list[str], message: str
) -> None:
    r = _bench(caches[which], tmp_path / "lb", *args)
    assert isinstance(r.exception, MalvisionError) and message in str(r.exception)  # main prints one line


def test_a_model_trained_on_every_sample_ships_with_its_cv_figures(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    lb = tmp_path / "lb"
    assert _bench(caches[0], lb, "--full", "--models", "ngram").exit_code == 0
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "-m", "ngram", "-d", str(caches[0]), "-o", str(run), "--test-size", "0"])
    assert r.exit_code == 0, r.output
    shipped = tmp_path / "shipped.pt"
    r = runner.invoke(app, ["bundle", str(run), "-o", str(shipped)])
    assert isinstance(r.exception, MalvisionError) and "--cv" in str(r.exception)
    cv = lb / "stratified" / "leaderboard.json"
    assert runner.invoke(app, ["bundle", str(run), "-o", str(shipped), "--cv", str(cv)]).exit_code == 0
    card = load_checkpoint(shipped).extra["card"]
    row = json.loads(cv.read_text())[0]
    assert card["metrics"]["accuracy"] == row["accuracy_mean"] and card["metrics"]["n"] == 72
    assert set(card["training_ids"]) == set(CachedDataset(caches[0]).ids) and card["test_ids"] == []
    assert "trained on all 72 samples" in card["split"] and "cross-validation" in card["split"]
    r = runner.invoke(app, ["info", str(shipped), "--json"])
    assert r.exit_code == 0, r.output


def test_a_rerun_reuses_only_folds_of_the_same_settings_and_data(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "lb"
    first = _bench(caches[1], out, "--models", "ngram")
    assert first.exit_code == 0, first.output
    result = out / "stratified" / "ngram" / "fold0" / "result.json"
    stamp = result.stat().st_mtime_ns
    again = _bench(caches[1], out, "--models", "ngram")  # same settings: the folds are reused
    assert again.exit_code == 0 and result.stat().st_mtime_ns == stamp
    for args, message in (
        (["--models", "ngram", "--set", "ngram.top_k=7"], "holds a run of other settings (model_kwargs"),
        (["--models", "ngram", "--lr", "0.5"], "lr 0.002 -> 0.5"),
        (["--models", "ngram", "--seed", "3"], "seed 0 -> 3"),
    ):
        r = _bench(caches[1], out, *args)
        assert isinstance(r.exception, MalvisionError) and message in str(r.exception), (args, r.exception)
    other = _bench(caches[0], out, "--models", "ngram")  # another cache, same settings
    assert isinstance(other.exception, MalvisionError) and "holds a run on another cache" in str(
        other.exception
    )
    assert result.stat().st_mtime_ns == stamp


def test_evaluate_says_when_the_cache_cuts_what_the_model_reads(
    caches: tuple[Path, Path], tmp_path: Path
) -> None:
    whole, cut = caches
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "-m", "ngram", "-d", str(whole), "-o", str(run), "--test-size", "0"])
    assert r.exit_code == 0, r.output
    m = json.loads(runner.invoke(app, ["evaluate", str(run), "--data", str(cut), "--json"]).stdout)
    longer = int((CachedDataset(whole).lengths >= 64).sum())
    assert m["cut_samples"] == {"n": longer, "cache_max_len": 64, "model_max_len": 1000} and longer > 0
    assert "cut_samples" not in json.loads(
        runner.invoke(app, ["evaluate", str(run), "--data", str(whole), "--json"]).stdout
    )
