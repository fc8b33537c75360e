"""``malvision reproduce`` on a tiny synthetic corpus, the recipes of the shipped models, the data hash,
run folders in ``info`` and ``--version``."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from data.helpers import aes_zip, manifest_csv, sha
from malvision.bundled import BUNDLED, WEIGHTS_DIR, resolve_checkpoint
from malvision.cli import app
from malvision.data.cache import CachedDataset
from malvision.errors import CheckpointError, MalvisionError
from malvision.recipe import recipe_for, train_argv

SRC = Path(__file__).parents[1] / "src"


def _benign(root: Path, seed: int = 0) -> None:
    """A benign corpus (pe/<sha256> + manifest_ext.csv): small valid PEs of 6 projects."""
    from corpus import minimal_pe

    (root / "pe").mkdir(parents=True)
    rows = ["sha256,size,source_package"]
    for k in range(18):
        data = minimal_pe(0x200 * (2 + k % 5), 0x200 * (1 + k % 3), seed=seed * 100 + k)
        (root / "pe" / sha(data)).write_bytes(data)
        rows.append(f"{sha(data)},{len(data)},pypi:proj{k % 6}==1.{k}")
    (root / "manifest_ext.csv").write_text("\n".join(rows) + "\n")


def _malware(home: Path) -> tuple[Path, Path]:
    """A sample zip and a malware corpus of two collections: small PEs with a random overlay."""
    from corpus import minimal_pe

    rng = np.random.default_rng(3)

    def sample(k: int) -> bytes:
        pe = minimal_pe(0x200 * (2 + k % 4), 0x200, seed=1000 + k)
        return pe + rng.integers(0, 256, 3000 + 100 * k, dtype=np.uint8).tobytes()

    entries, rows = {}, []
    for k in range(6):
        data = sample(k)
        entries[f"Fam{k % 3}/{sha(data)}"] = data
        rows.append((sha(data), f"Fam{k % 3}", "pe", len(data), f"s{k}.exe"))
    entries["manifest.csv"] = manifest_csv(rows)
    zip_path = aes_zip(home / "zoo.zip", entries)
    corpus = home / "malware"
    lines = ["sha256,size,repo,group"]
    for k in range(6, 18):
        data = sample(k)
        group = f"fam{k % 4}"
        (corpus / group).mkdir(parents=True, exist_ok=True)
        (corpus / group / sha(data)).write_bytes(data)
        lines.append(f"{sha(data)},{len(data)},owner/repo{k % 2},{group}")
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")
    return zip_path, corpus


def _mv(*args: object, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MALVISION_CACHE": str(home), "PYTHONPATH": str(SRC)}
    r = subprocess.run(
        [sys.executable, "-m", "malvision", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.mark.slow
def test_reproduce_rebuilds_matches_and_catches_a_changed_file(tmp_path: Path) -> None:
    """The path `malvision reproduce default` takes, on a tiny corpus: build, train-detector, reproduce
    (every figure matches, the weights are identical), then one corpus file changed: reproduce names it
    and exits 1, and never writes outside its scratch folder."""
    home = tmp_path / "home"
    _benign(home / "benign")
    zip_path, corpus = _malware(home)
    cache = home / "caches" / "feat"
    _mv("data", "build", "--kind", "features", "--benign", home / "benign", "--malware-zip", zip_path,
        "--malware", corpus, "--out", cache, home=home)  # fmt: skip
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["command"][:2] == ["data", "build"] and str(zip_path) in meta["command"]
    assert meta["data_hash"] == CachedDataset(cache).data_hash
    run = tmp_path / "run"
    _mv("train-detector", "--data", cache, "--out", run, "--model", "lgbm", "--protocols", "source,group",
        "--folds", "3", "--threads", "1", "--set", "min_child_samples=3", home=home)  # fmt: skip
    model = run / "model.pt"
    before = model.read_bytes()
    card = json.loads((run / "card.json").read_text())
    assert card["recipe"]["steps"][0][-2:] == ["--out", "{data}"]
    assert "{home}/benign" in card["recipe"]["steps"][0]  # no machine's path in the recipe
    assert card["recipe"]["steps"][1][:5] == ["train-detector", "--data", "{data}", "--out", "{run}"]
    assert card["data"]["data_hash"] == meta["data_hash"]

    work = tmp_path / "work"
    r = _mv("reproduce", model, "--work", work, "--all", home=home)
    assert "| weights |" in r.stdout and "| identical | match |" in r.stdout
    assert "model: MATCHES" in r.stdout and "DIFFERS" not in r.stdout
    report = json.loads((work / "reproduce.json").read_text())
    assert report["matches"] and len(report["rows"]) > 30  # every figure, each compared
    assert any(row["figure"] == "metrics.roc_auc" and row["match"] for row in report["rows"])
    assert model.read_bytes() == before  # the model reproduced is only read

    # a benign file changes (a new build of one project): the data is not the card's any more
    victim = sorted((home / "benign" / "pe").iterdir())[0]
    data = victim.read_bytes() + b"\x00" * 512
    victim.unlink()
    (home / "benign" / "pe" / sha(data)).write_bytes(data)
    manifest = home / "benign" / "manifest_ext.csv"
    manifest.write_text(
        manifest.read_text().replace(f"{victim.name},{len(data) - 512}", f"{sha(data)},{len(data)}")
    )
    r = _mv("reproduce", model, "--work", work, home=home, check=False)
    assert r.returncode == 1, r.stderr
    assert "DIFFERS" in r.stdout and "the rebuilt data is not the card's" in r.stdout
    assert f"not in the card's training files: {home / 'benign' / 'pe' / sha(data)}" in r.stderr
    assert f"in the card, not in the data: {victim.name}" in r.stderr
    assert "Traceback" not in r.stderr and model.read_bytes() == before
    # trained anyway (--keep-going), the figures say what changed
    r = _mv("reproduce", model, "--work", work, "--keep-going", "--json", home=home, check=False)
    assert r.returncode == 1, r.stderr
    rows = {row["figure"]: row for row in json.loads(r.stdout.splitlines()[-1])["rows"]}
    assert not rows["data: sha256 of sorted file hashes and labels"]["match"]
    assert not rows["training files"]["match"] and not rows["weights"]["match"]


def _main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: object
) -> tuple[int, str]:
    """``malvision ARGS`` through ``main``: (exit status, stderr)."""
    from malvision.cli import main

    monkeypatch.setattr(sys, "argv", ["malvision", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), capsys.readouterr().err


def test_reproduce_refuses_a_card_without_recipe_and_the_package_as_scratch(
    tiny_detector: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _main(monkeypatch, capsys, "reproduce", tiny_detector, "--work", tmp_path / "w")
    assert code == 2 and "records no recipe" in err and err.count("\n") == 1
    code, err = _main(
        monkeypatch, capsys, "reproduce", "default", "--work", WEIGHTS_DIR / "scratch", "--dry-run"
    )
    assert code == 2 and "shipped models" in err and err.count("\n") == 1
    assert not (WEIGHTS_DIR / "scratch").exists()


def test_reproduce_names_a_missing_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MALVISION_CACHE", str(tmp_path / "empty-home"))
    code, err = _main(monkeypatch, capsys, "reproduce", "default", "--work", tmp_path / "w", "--dry-run")
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'empty-home' / 'benign-win32'}: corpus missing" in err and "build_corpora.sh" in err


@pytest.mark.parametrize("step", [["export", "x", "--onnx"], ["train", "--data", "{data}", "--out", "/etc"]])
def test_a_recipe_runs_training_commands_into_the_scratch_folder_only(step: list[str]) -> None:
    with pytest.raises(MalvisionError, match="reproduce runs|outside the scratch"):
        recipe_for("x", {"recipe": {"version": 1, "steps": [step], "model": "{run}/model.pt"}})


def test_a_scratch_run_is_reused_only_by_the_step_that_made_it(tmp_path: Path) -> None:
    """A run left by another recipe (another setting, same data) is trained again, never compared as if it
    were this one's; the same step finds it done; a benchmark's folder is its own."""
    from malvision.reproduce import plan, run_steps

    def recipe(value: str) -> dict:
        steps = [
            ["benchmark", "--full", "--data", "{data}", "--out", "{work}/cv", "--set", f"m.a={value}"],
            ["train-detector", "--data", "{data}", "--out", "{run}", "--set", f"a={value}"],
        ]
        return {"version": 1, "steps": steps, "model": "{run}/model.pt"}

    calls: list[list[str]] = []
    found: list[str | None] = []  # what each call found in its folder: the setting that made it, or None

    def runner(step: list[str]) -> int:
        out = Path(step[step.index("--out") + 1])
        found.append((out / "model.pt").read_text() if (out / "model.pt").exists() else None)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.pt").write_text(step[-1])
        calls.append(step)
        return 0

    def reproduce(value: str) -> None:
        run_steps(plan("x", recipe(value), tmp_path / "work"), runner, lambda _: None)

    reproduce("1")
    assert [c[0] for c in calls] == ["benchmark", "train-detector"]
    reproduce("1")  # the same recipe: the trained run stands, the benchmark resumes its own folds
    assert [c[0] for c in calls] == ["benchmark", "train-detector", "benchmark"] and found[2] == "m.a=1"
    reproduce("2")  # another setting: both folders are cleared and made again
    assert [c[-1] for c in calls[3:]] == ["m.a=2", "a=2"] and found[3:] == [None, None]
    assert (tmp_path / "work" / "run" / "model.pt").read_text() == "a=2"


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_shipped_recipes_are_what_made_the_shipped_models(name: str) -> None:
    """Each bundled model has a recipe (its card's, or ``SHIPPED``'s for cards older than recipes) that
    trains with its card's command, on as many files as the card lists."""
    from malvision.checkpoint import load_checkpoint

    card = load_checkpoint(resolve_checkpoint(name)).extra["card"]
    recipe = recipe_for(name, card)
    train = next(s for s in recipe["steps"] if s[0] in ("train", "train-detector"))
    typed = train_argv(shlex.split(card["command"])[1:])
    assert train[0] == typed[0] and _options(train) == _options(typed)  # the order the user typed aside
    counts = (card.get("data") or {}).get("counts")
    listed = sum(counts.values()) if counts else len(card["training_ids"]) + len(card["test_ids"])
    assert recipe["n_files"] == listed
    assert name in BUNDLED


def _options(argv: list[str]) -> list[tuple[str, str | None]]:
    """A command's options as sorted (option, value) pairs: ``--set a=1 --set b=2`` in any order."""
    pairs, rest = [], argv[1:]
    while rest:
        opt, rest = rest[0], rest[1:]
        value = rest.pop(0) if rest and not rest[0].startswith("-") else None
        pairs.append((opt, value))
    return sorted(pairs, key=lambda p: (p[0], p[1] or ""))


def test_data_hash_is_the_same_wherever_the_data_sits(tmp_path: Path) -> None:
    from malvision.convert.spec import ConvertSpec
    from malvision.data.cache_write import write_cache
    from malvision.data.readers import CsvDataset

    a = tmp_path / "a"
    a.mkdir()
    for k in range(4):
        (a / f"f{k}.bin").write_bytes(bytes([k]) * (100 + k))
    (a / "labels.csv").write_text("file,label\n" + "".join(f"f{k}.bin,{'ab'[k % 2]}\n" for k in range(4)))
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    spec = ConvertSpec(kind="image", image_size=8)
    write_cache(CsvDataset(a / "labels.csv"), tmp_path / "ca", spec)
    write_cache(CsvDataset(b / "labels.csv"), tmp_path / "cb", spec)
    ca, cb = CachedDataset(tmp_path / "ca"), CachedDataset(tmp_path / "cb")
    assert ca.manifest_hash != cb.manifest_hash  # the manifest lists where each file was read
    assert ca.data_hash == cb.data_hash
    (b / "labels.csv").write_text((b / "labels.csv").read_text().replace("f0.bin,a", "f0.bin,b"))
    write_cache(CsvDataset(b / "labels.csv"), tmp_path / "cc", spec)
    assert CachedDataset(tmp_path / "cc").data_hash != ca.data_hash  # a label is part of what data is


def test_info_reads_every_kind_of_run_folder(tiny_detector: Path, tmp_path: Path) -> None:
    for name in ("model.pt", "best.pt", "bundled.pt"):
        run = tmp_path / name.removesuffix(".pt")
        run.mkdir()
        shutil.copyfile(tiny_detector, run / name)
        assert resolve_checkpoint(run) == run / name
        r = CliRunner().invoke(app, ["info", str(run)])
        assert r.exit_code == 0 and "model: cnn" in r.output
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no best.pt, model.pt or bundled.pt"):
        resolve_checkpoint(tmp_path / "empty")


def test_version() -> None:
    from malvision import __version__

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"malvision {__version__}"


def test_portable_paths_fold_dots_into_the_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from malvision import recipe

    shared, repo = tmp_path / "shared", tmp_path / "repo"
    (shared / "data").mkdir(parents=True)
    repo.mkdir()
    monkeypatch.setattr(recipe, "_places", lambda: {"home": tmp_path / "home", "shared": shared})
    # a path given as ../shared from the repository is the shared folder, written the same as the default
    assert recipe.portable(repo / ".." / "shared" / "data" / "x.zip") == "{shared}/data/x.zip"
    assert recipe.portable(shared) == "{shared}"
    assert recipe.portable(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")


def test_a_scratch_run_of_the_same_files_converted_otherwise_is_trained_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same recipe and files, but the cache now holds another features version: the run made from
    the old cache is cleared, not taken for this data's (the manifest alone does not tell them apart)."""
    import malvision.data.cache as cache
    from malvision.convert.spec import ConvertSpec
    from malvision.reproduce import plan, run_steps

    version = {"now": 3}

    class Built:  # what the data step left: the same files each time, in the version of the day
        def __init__(self, _: Path) -> None:
            self.manifest_hash = "ab" * 32
            self.spec = ConvertSpec(kind="features", version=version["now"])

    monkeypatch.setattr(cache, "CachedDataset", Built)
    steps = [["data", "build", "--kind", "features", "--out", "{data}"],
             ["train-detector", "--data", "{data}", "--out", "{run}"]]  # fmt: skip
    trained: list[bool] = []  # for each training call: was a model already in its folder

    def runner(step: list[str]) -> int:
        out = Path(step[step.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if step[0] == "train-detector":
            trained.append((out / "model.pt").exists())
            (out / "model.pt").write_text(str(version["now"]))
        return 0

    rep = plan("x", {"version": 1, "steps": steps, "model": "{run}/model.pt"}, tmp_path / "work")
    run_steps(rep, runner, lambda _: None)
    run_steps(rep, runner, lambda _: None)  # the same data again: the run stands
    assert trained == [False]
    version["now"] = 4
    run_steps(rep, runner, lambda _: None)
    assert trained == [False, False] and (tmp_path / "work" / "run" / "model.pt").read_text() == "4"


def test_an_older_conversion_is_pinned_on_the_data_step_only_when_the_model_reads_one() -> None:
    from malvision.convert.spec import ConvertSpec
    from malvision.recipe import pin_conversion

    recipe = {"version": 1, "model": "{run}/model.pt", "steps": [
        ["data", "build", "--kind", "features", "--benign", "{home}/benign", "--out", "{data}"],
        ["train-detector", "--data", "{data}", "--out", "{run}"]]}  # fmt: skip
    assert pin_conversion(recipe, ConvertSpec(kind="features")) == recipe
    old = pin_conversion(recipe, ConvertSpec(kind="features", version=3))
    assert old["steps"][0][-4:] == ["--kind-version", "3", "--out", "{data}"]
    assert (
        old["steps"][1] == recipe["steps"][1]
        and pin_conversion(old, ConvertSpec(kind="features", version=3)) == old
    )
    assert pin_conversion(recipe, ConvertSpec(kind="fused", version=2)) == recipe  # another kind's data


@pytest.mark.slow
def test_a_model_of_features_3_reproduces_from_a_card_that_never_named_its_version(tmp_path: Path) -> None:
    """A cache built as features 3 (``--kind-version 3``) has the shorter vector; a model trained on it,
    its card's recipe stripped of the version as cards made before features 4 are, still reproduces:
    ``reproduce`` rebuilds the data in the conversion the model reads."""
    import torch

    home = tmp_path / "home"
    _benign(home / "benign")
    zip_path, corpus = _malware(home)
    cache = home / "caches" / "feat3"
    _mv("data", "build", "--kind", "features", "--kind-version", "3", "--benign", home / "benign",
        "--malware-zip", zip_path, "--malware", corpus, "--out", cache, home=home)  # fmt: skip
    meta = json.loads((cache / "meta.json").read_text())
    assert (
        meta["spec"]["version"] == 3 and meta["command"][meta["command"].index("--kind-version") + 1] == "3"
    )
    from malvision.convert.pefeatures import FEATURE_WIDTHS

    assert np.load(cache / "x.npy").shape[1] == FEATURE_WIDTHS[3]
    run = tmp_path / "run"
    _mv("train-detector", "--data", cache, "--out", run, "--model", "lgbm", "--protocols", "source",
        "--folds", "3", "--threads", "1", "--set", "min_child_samples=3", home=home)  # fmt: skip
    model = run / "model.pt"
    payload = torch.load(model, weights_only=True)
    step = payload["extra"]["card"]["recipe"]["steps"][0]
    at = step.index("--kind-version")
    payload["extra"]["card"]["recipe"]["steps"][0] = step[:at] + step[at + 2 :]
    torch.save(payload, model)
    r = _mv("reproduce", model, "--work", tmp_path / "work", home=home)
    assert "--kind-version 3" in r.stderr and "model: MATCHES" in r.stdout
