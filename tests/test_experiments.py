"""End to end on tiny synthetic data: train, evaluate, benchmark, gradients, resume, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from malvision.checkpoint import load_checkpoint
from malvision.cli import app
from malvision.convert.spec import ConvertSpec
from malvision.data.cache import CachedDataset
from malvision.data.cache_write import write_cache
from malvision.data.detect import open_dataset
from malvision.errors import MalvisionError
from malvision.evaluate.metrics import threshold_for_fpr, tpr_at_fpr
from malvision.train import TrainConfig, fit, get_lr

runner = CliRunner()
FAMILIES = {"alpha": ["push", "mov", "call"], "beta": ["xor", "jmp", "add"], "gamma": ["lea", "ret", "cmp"]}


def make_opcode_tree(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """Three families whose opcode files draw mostly from their own three mnemonics."""
    rng = np.random.default_rng(seed)
    common = ["nop", "test", "sub"]
    for fam, own in FAMILIES.items():
        (root / fam).mkdir(parents=True)
        for i in range(per_class):
            n = int(rng.integers(40, 120))
            toks = [own[k] if rng.random() < 0.7 else common[k] for k in rng.integers(0, 3, n)]
            (root / fam / f"{fam}{i:03d}.txt").write_text("\n".join(toks) + "\n")
    return root


@pytest.fixture(scope="module")
def opcode_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ops")
    tree = make_opcode_tree(base / "tree")
    with open_dataset(tree) as raw:
        write_cache(raw, base / "cache", ConvertSpec(kind="opcodes", max_len=256))
    return base / "cache"


def test_lr_schedule_warms_up_then_decays() -> None:
    lrs = [get_lr(s, 100, 1.0, 0.1) for s in range(100)]
    assert lrs[0] < lrs[9] <= 1.0
    assert lrs[-1] < 0.1 and lrs[-1] >= 0.05
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_threshold_for_fpr_keeps_the_false_positive_rate() -> None:
    benign = np.linspace(0, 1, 1000)
    t = threshold_for_fpr(benign, 0.01)
    assert (benign >= t).mean() <= 0.01
    assert (benign >= t).sum() == 10
    y = np.r_[np.zeros(1000), np.ones(10)]
    assert tpr_at_fpr(y, np.r_[benign, np.full(10, 2.0)], 0.001) == 1.0
    # several targets at once: the same thresholds as one at a time (ties and "flag all" included)
    tied = np.r_[benign, np.full(30, 0.5)]
    targets = [0.0, 0.001, 0.01, 0.5, 1.0]
    assert threshold_for_fpr(tied, targets).tolist() == [threshold_for_fpr(tied, f) for f in targets]
    assert threshold_for_fpr(tied, 1.0) == 0.0 and threshold_for_fpr([], 0.01) == 0.0


def test_train_learns_and_resume_continues(opcode_cache: Path, tmp_path: Path) -> None:
    ds = CachedDataset(opcode_cache)
    idx = np.arange(len(ds))
    cfg = TrainConfig(model="cnn", epochs=2, batch_size=8, lr=5e-3, seed=1, patience=5)
    res = fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "run")
    assert len(res.history) == 2
    ck = load_checkpoint(res.checkpoint)
    assert ck.spec["vocab"] and ck.seed == 1 and ck.manifest_hash == ds.manifest_hash
    # Resume: the run continues from last.pt to the new epoch count instead of starting over.
    cfg4 = TrainConfig(**{**cfg.__dict__, "epochs": 4})
    res2 = fit(ds, idx[::2], idx[1::2], cfg4, tmp_path / "run", resume=True)
    assert [h["epoch"] for h in res2.history] == [0, 1, 2, 3]
    assert res2.history[:2] == res.history


def test_train_and_evaluate_commands(opcode_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "train",
            "-m",
            "cnn",
            "-d",
            str(opcode_cache),
            "-o",
            str(run),
            "--epochs",
            "6",
            "--batch-size",
            "8",
            "--lr",
            "5e-3",
        ],
    )
    assert r.exit_code == 0, r.output
    for name in ("best.pt", "metrics.json", "curves.png", "confusion.png", "history.csv", "split.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8  # the families are easy to tell apart
    r = runner.invoke(app, ["evaluate", str(run), "--data", str(opcode_cache), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert {"accuracy", "macro_f1", "n"} <= set(m) and m["n"] == 72
    # The run's own training and validation rows (its split.json) are counted apart: only its test rows
    # are a test of it.
    split = json.loads((run / "split.json").read_text())
    assert m["n_seen_in_training"] == len(split["train_ids"]) + len(split["val_ids"])
    assert m["unseen"]["n"] == len(split["test_ids"]) == metrics["n_test"]
    assert m["unseen"]["accuracy"] == metrics["test"]["accuracy"]
    # A non-empty run folder is not overwritten by accident.
    r = runner.invoke(app, ["train", "-m", "cnn", "-d", str(opcode_cache), "-o", str(run)])
    assert r.exit_code != 0


def test_benchmark_writes_table_and_plot(opcode_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "lb"
    r = runner.invoke(
        app,
        [
            "benchmark",
            "--models",
            "cnn,gru",
            "-d",
            str(opcode_cache),
            "-o",
            str(out),
            "--folds",
            "2",
            "--epochs",
            "1",
            "--set",
            "gru.hidden=8",
            "--grouped",
            "no",
        ],
    )
    assert r.exit_code == 0, r.output
    table = (out / "stratified" / "leaderboard.md").read_text()
    assert "| cnn |" in table and "| gru |" in table
    assert (out / "stratified" / "leaderboard.png").stat().st_size > 1000
    rows = json.loads((out / "stratified" / "leaderboard.json").read_text())
    assert rows[1]["model_kwargs"] == {"hidden": 8}
    assert all(0 <= r["accuracy_mean"] <= 1 for r in rows)


def test_gradients_command_plots_norms(opcode_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "g"
    r = runner.invoke(
        app,
        [
            "gradients",
            "--models",
            "rnn,gru",
            "-d",
            str(opcode_cache),
            "-o",
            str(out),
            "--seq-len",
            "32",
            "--lengths",
            "8,32",
            "--epochs",
            "1",
            "--hidden",
            "8",
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "gradients.json").read_text())
    assert set(summary["accuracy_by_length"]) == {"rnn", "gru"}
    assert (out / "gradients.png").stat().st_size > 1000


def test_gradients_refuses_what_it_would_get_wrong(opcode_cache: Path, tmp_path: Path) -> None:
    """Lengths past the cache's cut, a probe no test sequence reaches, and a rerun into a folder of other
    settings: one line each (a rerun with --hidden changed was a state_dict traceback)."""
    out = tmp_path / "g"
    base = ["gradients", "--models", "rnn", "-d", str(opcode_cache), "-o", str(out), "--epochs", "1"]
    small = ["--seq-len", "16", "--lengths", "16", "--hidden", "8"]
    for args, message in (
        (
            ["--seq-len", "16", "--lengths", "16,512"],
            "cut at 256 opcodes, so lengths [512] would train on the cut",
        ),
        (["--seq-len", "250", "--lengths", "16"], "no test sequence is 250 opcodes long"),
    ):
        r = runner.invoke(app, base + args)
        assert isinstance(r.exception, MalvisionError) and message in str(r.exception), r.exception
    assert runner.invoke(app, base + small).exit_code == 0
    r = runner.invoke(app, base + small[:-1] + ["4"])
    assert isinstance(r.exception, MalvisionError) and "holds a run of other settings" in str(r.exception)
    assert "{'hidden': 8, 'pool': 'last'} -> {'hidden': 4, 'pool': 'last'}" in str(r.exception)


def test_gradient_norms_do_not_underflow_to_zero() -> None:
    """Squared float32 gradients under ~1e-19 would be 0: the norms are taken in float64."""
    import torch

    from malvision.evaluate.gradients import gradient_norms
    from malvision.models import create_model

    torch.manual_seed(0)
    m = create_model("rnn", in_kind="opcodes", n_classes=3, vocab_size=50, hidden=32, pool="last")
    g = gradient_norms(m, torch.randint(2, 50, (8, 100)), torch.randint(0, 3, (8,)))
    assert g[0] < 1e-30 and (g > 0).all()  # in float32, 42 of the 100 steps read 0


def test_gradient_norms_vanish_for_a_vanilla_rnn() -> None:
    """At initialisation, the gradient reaching h_0 from a last-step loss is far smaller for a tanh RNN."""
    import torch

    from malvision.evaluate.gradients import gradient_norms
    from malvision.models import create_model

    torch.manual_seed(0)
    x = torch.randint(2, 50, (16, 200))
    y = torch.randint(0, 3, (16,))
    norms = {}
    for name in ("rnn", "lstm"):
        m = create_model(name, in_kind="opcodes", n_classes=3, vocab_size=50, hidden=32, pool="last")
        g = gradient_norms(m, x, y)
        norms[name] = g[0] / g[-1]
    assert norms["rnn"] < 1e-3
    assert norms["rnn"] < norms["lstm"]


@pytest.mark.slow
def test_train_runs_data_parallel_under_torchrun(opcode_cache: Path, tmp_path: Path) -> None:
    built = tmp_path / "built"  # by the command, so the cache knows how it was made and the run has a recipe
    r = runner.invoke(
        app, ["data", "build", "--opcodes", str(opcode_cache.parent / "tree"), "--out", str(built)]
    )
    assert r.exit_code == 0, r.output
    opcode_cache = built
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "malvision.cli",
        "train",
        "-m",
        "cnn",
        "-d",
        str(opcode_cache),
        "-o",
        str(run),
        "--epochs",
        "2",
        "--batch-size",
        "8",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (run / "best.pt").is_file() and (run / "metrics.json").is_file()
    assert "Traceback" not in p.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["command"].startswith(
        "torchrun --nproc-per-node 2 malvision train"
    )
    assert metrics["recipe"]["incomplete"].startswith("trained under torchrun with 2 processes")
    # A refused setting: one error line (rank 0's), not one a process.
    bad = subprocess.run(
        cmd[:-4] + ["-o", str(tmp_path / "bad"), "--lr", "nan"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode != 0 and bad.stderr.count("error: lr must be positive, got nan") == 1
    assert not (tmp_path / "bad").exists()
    # refused inside fit, before the processes join: still one line
    trees = [("ngram" if a == "cnn" else a) for a in cmd[:-4]] + ["-o", str(tmp_path / "trees")]
    refused = subprocess.run(trees, capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode != 0 and refused.stderr.count("is fitted in one call, not data-parallel") == 1
    assert not (tmp_path / "trees").exists()


def test_bundle_carries_a_card_and_evaluate_flags_training_samples(
    opcode_cache: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "-m", "cnn", "-d", str(opcode_cache), "-o", str(run), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    shipped = tmp_path / "shipped.pt"
    assert runner.invoke(app, ["bundle", str(run), "-o", str(shipped)]).exit_code == 0
    card = load_checkpoint(shipped).extra["card"]
    split = json.loads((run / "split.json").read_text())
    assert set(card["test_ids"]) == set(split["test_ids"])
    assert not set(card["training_ids"]) & set(card["test_ids"])
    assert "stratified holdout" in card["split"] and card["command"].startswith("malvision ")
    r = runner.invoke(app, ["evaluate", str(shipped), "--data", str(opcode_cache), "--json"])
    m = json.loads(r.stdout)
    assert m["n_seen_in_training"] == len(card["training_ids"])
    assert m["unseen"]["n"] == len(card["test_ids"])
    r = runner.invoke(app, ["info", str(shipped), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["split"] == card["split"]


def test_a_resumed_run_trains_as_the_uninterrupted_one(opcode_cache: Path, tmp_path: Path) -> None:
    """Dropout's draws and the shuffle go on from where the stopped run stood (last.pt keeps the random
    states): stopped after 2 of 4 epochs and resumed, it equals 4 in one go, loss by loss and weight by
    weight."""
    import torch

    ds = CachedDataset(opcode_cache)
    idx = np.arange(len(ds))
    cfg = TrainConfig(model="cnn", epochs=4, batch_size=8, lr=5e-3, seed=3, patience=9, keep="last")
    whole = fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "whole")

    def stop_after_two(row: dict[str, float]) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt  # as a Ctrl-C after the second epoch's last.pt

    with pytest.raises(KeyboardInterrupt):
        fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "cut", on_epoch=stop_after_two)
    resumed = fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "cut", resume=True)
    seconds = [h["seconds"] for h in resumed.history]
    assert seconds == sorted(seconds)  # the clock goes on from the stopped run's, it does not restart
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in whole.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    a, b = (
        load_checkpoint(whole.checkpoint).model.state_dict(),
        load_checkpoint(resumed.checkpoint).model.state_dict(),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resume_refuses_another_cache_and_takes_older_settings(opcode_cache: Path, tmp_path: Path) -> None:
    """The same files cut at another length share the manifest: data.json tells the caches apart. A
    config.json written before a setting existed reads as that setting's default."""
    from malvision.errors import MalvisionError

    cut = tmp_path / "cut64"
    with open_dataset(opcode_cache.parent / "tree") as raw:  # the fixture's own tree
        write_cache(raw, cut, ConvertSpec(kind="opcodes", max_len=64))
    ds, other = CachedDataset(opcode_cache), CachedDataset(cut)
    assert ds.manifest_hash == other.manifest_hash
    idx = np.arange(len(ds))
    cfg = TrainConfig(model="cnn", epochs=1, batch_size=8)
    fit(ds, idx[::2], idx[1::2], cfg, tmp_path / "run")

    def resume(data: CachedDataset, **change: object) -> Any:
        return fit(
            data,
            idx[::2],
            idx[1::2],
            TrainConfig(**{**cfg.__dict__, **change}),
            tmp_path / "run",
            resume=True,
        )

    with pytest.raises(MalvisionError, match="holds a run on another cache"):
        resume(other, epochs=2)
    with pytest.raises(MalvisionError, match="holds a run of other settings \\(lr 0.002 -> 0.01\\)"):
        resume(ds, lr=0.01)
    config = tmp_path / "run" / "config.json"
    config.write_text(
        json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "type_power"})
    )
    res = resume(ds, epochs=2)
    assert [h["epoch"] for h in res.history] == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_train_leaves_whole_files_and_resumes(
    opcode_cache: Path, tmp_path: Path, sig: int
) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "malvision.cli", "train", "-m", "cnn", "-d", str(opcode_cache), "-o", str(run),
           "--epochs", "400", "--patience", "400", "--batch-size", "4", "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)  # land somewhere inside a later epoch
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "error: interrupted"
    assert not [p for p in run.iterdir() if p.name.endswith(".part")]
    ck = load_checkpoint(run / "last.pt")  # whole, not half-written
    done = ck.extra["train_state"]["epoch"]
    r = runner.invoke(app, ["train", "-m", "cnn", "-d", str(opcode_cache), "-o", str(run), "--epochs", str(done + 3),
                            "--patience", "400", "--batch-size", "4", "--resume"])  # fmt: skip
    assert r.exit_code == 0, r.output
    history = (run / "history.csv").read_text().splitlines()[1:]
    assert [int(float(line.split(",")[0])) for line in history] == list(range(done + 3))
    assert (run / "metrics.json").is_file()


def test_data_build_leaves_out_lists_of_sample_ids_without_failing(tmp_path: Path) -> None:
    """BIG2015's archive ships ``<family>/<family>.txt`` lists of sample ids beside the samples: a build
    leaves them out, says so, lists them in meta.json, and still exits 0 (scripts run it under set -e)."""
    tree = make_opcode_tree(tmp_path / "tree", per_class=4)
    (tree / "alpha" / "alpha.txt").write_text(
        "".join(f"alpha{i:03d}SampleIdOfTwentyChars\n" for i in range(4))
    )
    result = runner.invoke(app, ["data", "build", "--opcodes", str(tree), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "left out 1 file(s) that are not samples" in result.output and "alpha.txt" in result.output
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["n"] == 12 and meta["n_failed"] == 0
    assert [Path(src).name for src, _ in meta["not_samples"]] == ["alpha.txt"]
