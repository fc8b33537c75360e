"""``malvision reproduce``: rebuild a model's data and train it again from its recipe, in a scratch folder,
then compare the two cards figure by figure.

The steps are ``malvision`` commands, run by the caller's ``runner`` (the CLI runs them in its own
process), each skipped when what it makes is there already and made from the same data, so an
interrupted reproduction resumes. Nothing is written outside the scratch folder;
the shipped weights are only read.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from malvision.errors import MalvisionError
from malvision.io import make_dirs
from malvision.recipe import CORPORA, corpus_paths, expand, step_outputs

__all__ = ["Row", "Reproduction", "check_work_dir", "plan", "run_steps", "data_differences", "compare_cards"]

# Card fields that say when and where, not what: never compared.
NOT_COMPARED = ("date", "command", "train_seconds", "file", "split", "score", "threshold_source", "recipe")
REL_TOL = 1e-9
DATA_STEP = "data-step.json"  # the data build step that made the scratch cache and its manifest_hash
# each scratch run folder and the training step it is for (no other step reuses it)
RUN_STEP = "run-steps.json"


@dataclass(frozen=True)
class Row:
    """One figure of the two cards: its name, both values as text and whether they agree."""

    figure: str
    shipped: str
    reproduced: str
    match: bool


@dataclass
class Reproduction:
    """Where a reproduction works and what it runs."""

    name: str
    recipe: dict[str, Any]
    work: Path
    places: dict[str, Path]

    def expand(self, arg: str) -> str:
        return expand(arg, self.places)

    @property
    def steps(self) -> list[list[str]]:
        return [[self.expand(a) for a in step] for step in self.recipe["steps"]]

    @property
    def model_path(self) -> Path:
        return Path(self.expand(self.recipe["model"]))

    @property
    def data_dir(self) -> Path:
        return Path(self.places["data"])


def check_work_dir(work: Path) -> Path:
    """``work`` resolved; refused when it lies inside the installed package (its shipped weights)."""
    from malvision.bundled import WEIGHTS_DIR

    w = work.expanduser().resolve()
    package = WEIGHTS_DIR.parent.resolve()
    if w.is_relative_to(package) or package.is_relative_to(w):
        raise MalvisionError(
            f"{work}: holds the installed package and its shipped models; pick another --work"
        )
    if w.exists() and not w.is_dir():
        raise MalvisionError(f"{work}: not a folder; pick another --work")
    return w


def plan(name: str, recipe: dict[str, Any], work: Path) -> Reproduction:
    """The reproduction of ``recipe`` in ``work``; every corpus it reads must exist (else one line
    naming the first missing one and the command that builds it)."""
    from malvision.recipe import _places

    places = {**_places(), "work": work, "data": work / "data", "run": work / "run"}
    rep = Reproduction(name, recipe, work, places)
    for corpus in corpus_paths(recipe["steps"]):
        path = Path(rep.expand(corpus))
        if not path.exists():
            how = CORPORA.get(corpus, "see README.md, Real data").replace(
                "~/.cache/malvision", str(places["home"])
            )
            where = " (in a checkout of the repository)" if "scripts/" in how else ""
            raise MalvisionError(
                f"{path}: corpus missing (the recipe of {name} reads it); get it with{where}: {how}"
            )
    return rep


def _recorded(rep: Reproduction, name: str = DATA_STEP) -> dict[str, Any]:
    try:
        rec = json.loads((rep.work / name).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return rec if isinstance(rec, dict) else {}


def _out(step: list[str]) -> Path | None:
    """The folder a training step writes (its ``--out``), or None for a step that trains nothing."""
    if step[:1] not in (["train"], ["train-detector"], ["benchmark"]):
        return None
    outs = step_outputs(step)
    return Path(outs[0]) if outs else None


def _done(rep: Reproduction, step: list[str], reuse_data: bool) -> str | None:
    """Why ``step`` need not run again (its product is there, made from this data by this very step), or
    None. The data is rebuilt every time unless ``reuse_data``: the corpora may have changed since."""
    if step[:2] == ["data", "build"]:
        same = _recorded(rep).get("step") == step and rep.data_dir.is_dir()
        return f"cache {rep.data_dir} is built (--reuse-data)" if reuse_data and same else None
    out = _out(step)
    if out is None or _recorded(rep, RUN_STEP).get(str(out)) != step:  # another recipe's run, or none
        return None
    if step[0] == "train-detector" and (out / "model.pt").is_file():
        return f"{out}/model.pt is trained on this data by this step"
    if step[0] == "train" and (out / "metrics.json").is_file():
        return f"{out} is trained on this data by this step"
    return None


def _data_built(rep: Reproduction, step: list[str]) -> None:
    """Record the cache just built; when its data is not what the scratch runs were trained on (other
    files, or the same files converted otherwise: a new features version), clear them (everything in the
    scratch folder but the cache), so no step reuses results of other data."""
    from malvision.data.cache import CachedDataset
    from malvision.io import atomic_writer

    ds = CachedDataset(rep.data_dir)
    new = {"manifest_hash": ds.manifest_hash, "spec": ds.spec.to_dict()}
    before = _recorded(rep)
    if any(before.get(k) != v for k, v in new.items()):
        for p in rep.work.iterdir():
            if p.name not in (rep.data_dir.name, DATA_STEP):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    with atomic_writer(rep.work / DATA_STEP) as f:
        f.write(json.dumps({"step": step, **new}).encode())


def _prepare(rep: Reproduction, step: list[str]) -> None:
    """Clear what a step would refuse to write over, inside the scratch folder: the old cache, an
    unfinished ``train`` run (``train-detector`` and ``benchmark`` resume their folds instead), and a run
    another training step made; then record the step its folder is now for (finished or not)."""
    from malvision.io import atomic_writer

    if step[:2] == ["data", "build"] and rep.data_dir.exists():
        shutil.rmtree(rep.data_dir)
    if (out := _out(step)) is None:
        return
    made = _recorded(rep, RUN_STEP)
    if out.exists() and (step[0] == "train" or made.get(str(out)) != step):
        shutil.rmtree(out)  # folds are resumed only from a run of this very step
    with atomic_writer(rep.work / RUN_STEP) as f:
        f.write(json.dumps({**made, str(out): step}).encode())


def run_steps(
    rep: Reproduction,
    runner: Callable[[list[str]], int],
    say: Callable[[str], None],
    dry_run: bool = False,
    which: Callable[[list[str]], bool] = lambda step: True,
    reuse_data: bool = False,
) -> list[tuple[str, float]]:
    """Run the recipe's steps (those ``which`` picks) with ``runner`` (``malvision`` arguments -> exit
    status); returns (step, seconds) of those run. A step that fails stops the reproduction with one
    line naming it.
    """
    timings: list[tuple[str, float]] = []
    steps = rep.steps
    for k, step in enumerate(steps, 1):
        if not which(step):
            continue
        shown = "malvision " + " ".join(step)
        if not dry_run and (why := _done(rep, step, reuse_data)) is not None:
            say(f"step {k}/{len(steps)}: skipped ({why}): {shown}")
            continue
        say(f"step {k}/{len(steps)}: {shown}")
        if dry_run:
            continue
        make_dirs(rep.work)
        _prepare(rep, step)
        start = time.monotonic()
        try:
            rc = runner(step)
        except MalvisionError as e:
            raise MalvisionError(f"step {k} ({' '.join(step[:2])}) failed: {e}") from None
        if rc == 2 and step[:2] == ["data", "build"] and (rep.data_dir / "meta.json").is_file():
            say(
                "  the cache is built; the inputs listed above were left out (the data hash says if the card's were too)"
            )
        elif rc != 0:
            raise MalvisionError(f"step {k} ({' '.join(step[:2])}) failed with exit status {rc}: {shown}")
        if step[:2] == ["data", "build"]:
            _data_built(rep, step)
        timings.append((" ".join(step[:2]) if step[0] == "data" else step[0], time.monotonic() - start))
    return timings


def data_differences(ds: Any, card: dict[str, Any], limit: int = 5) -> list[str]:
    """How the rebuilt cache ``ds`` differs from the files the card lists, file by file (empty: same
    files). Detector cards list sha256, others ids; new files are named by where they were read."""
    if card.get("training_sha256"):
        listed, key = set(card["training_sha256"]), lambda r: r.sha256 or r.id
    elif card.get("training_ids") is not None:
        listed, key = set(card["training_ids"]) | set(card.get("test_ids", [])), lambda r: r.id
    else:
        return []
    have = {key(r): r for r in ds.records}
    new = [have[k] for k in sorted(set(have) - listed)]
    gone = sorted(listed - set(have))
    lines = [f"not in the card's training files: {r.source} ({key(r)}, {r.label})" for r in new[:limit]]
    lines += [f"in the card, not in the data: {k}" for k in gone[:limit]]
    if len(new) > limit or len(gone) > limit:
        lines.append(f"({len(new)} new and {len(gone)} missing files in all)")
    return lines


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every number, string or bool below ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _same(a: Any, b: Any) -> bool:
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not isinstance(a, int | float)
        or not isinstance(b, int | float)
    ):
        return a == b
    if math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def _text(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return _short(v) if isinstance(v, str) else str(v)


def _weights(a: Any, b: Any) -> Row:
    """Whether two checkpoints hold the same weights, tensor by tensor."""
    import torch

    sa, sb = a.model.state_dict(), b.model.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        return Row("weights", f"{len(sa)} tensors", f"{len(sb)} tensors, other shapes", False)
    diff = max(
        (float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].numel()), default=0.0
    )
    same = all(torch.equal(sa[k], sb[k]) for k in sa)
    n = sum(t.numel() for t in sa.values())
    return Row("weights", f"{n:,} numbers", "identical" if same else f"max abs difference {diff:.3g}", same)


def _ids(card: dict[str, Any]) -> list[str]:
    return list(card.get("training_sha256") or card.get("training_ids") or []) + list(
        card.get("test_ids") or []
    )


def compare_cards(
    shipped: Any, reproduced: Any, *, data_hash: str | None = None, expected_hash: str | None = None
) -> list[Row]:
    """Every figure of two checkpoints' cards side by side (``NOT_COMPARED`` left out), then the data
    identity, the training files and the weights. ``data_hash``: the rebuilt cache's;
    ``expected_hash``: the card's (or its recipe's)."""
    from malvision.card import ID_LISTS

    a, b = dict((shipped.extra or {}).get("card", {})), dict((reproduced.extra or {}).get("card", {}))
    rows = [
        Row("data: sha256 of sorted file hashes and labels", _text(expected_hash), _text(data_hash),
            expected_hash is not None and expected_hash == data_hash),
    ]  # fmt: skip
    ia, ib = _ids(a), _ids(b)
    same_ids = sorted(ia) == sorted(ib)
    rows.append(
        Row(
            "training files",
            f"{len(ia):,}",
            f"{len(ib):,}" + ("" if same_ids else " (other files)"),
            same_ids,
        )
    )
    for field, va, vb in (
        ("model", shipped.model_name, reproduced.model_name),
        ("model_kwargs", shipped.model_kwargs, reproduced.model_kwargs),
        ("classes", shipped.classes, reproduced.classes),
        ("seed", shipped.seed, reproduced.seed),
        ("input", shipped.spec, reproduced.spec),
    ):
        same = va == vb
        rows.append(Row(field, _short(va), _short(vb), same))
    skip = set(NOT_COMPARED) | set(ID_LISTS) | {"data"}
    fa = dict(_leaves({k: v for k, v in a.items() if k not in skip}, ""))
    fb = dict(_leaves({k: v for k, v in b.items() if k not in skip}, ""))
    for k in list(fa) + [k for k in fb if k not in fa]:
        va, vb = fa.get(k), fb.get(k)
        rows.append(Row(k, _text(va), _text(vb), _same(va, vb)))  # a field one card predates: None
    for k in ("counts", "groups"):
        va, vb = (a.get("data") or {}).get(k), (b.get("data") or {}).get(k)
        if va is not None or vb is not None:
            rows.append(Row(f"data.{k}", _short(va), _short(vb), va == vb))
    rows.append(_weights(shipped, reproduced))
    return rows


def _short(v: Any, limit: int = 60) -> str:
    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    if len(text) <= limit:
        return text
    import hashlib

    return f"{text[:24]}... (sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]})"


def collapse(rows: list[Row], keep: int = 8, wide: int = 40) -> list[Row]:
    """Rows grouped where there are many: by their first name part when it holds more than ``wide``
    rows, none of them a plain figure (a card's 1,000 groups), else by the first two parts when those
    hold more than ``keep``; each group one row saying how many of its figures match."""
    first = Counter(r.figure.split(".", 1)[0] for r in rows)
    stems = Counter(_stem(r.figure) for r in rows)
    shallow = {r.figure.split(".", 1)[0] for r in rows if _stem(r.figure) == r.figure}  # e.g. metrics.roc_auc

    def key(r: Row) -> str | None:
        head = r.figure.split(".", 1)[0]
        if first[head] > wide and head not in shallow:
            return head
        return _stem(r.figure) if stems[_stem(r.figure)] > keep else None

    groups: dict[str, list[Row]] = {}
    for r in rows:
        if (k := key(r)) is not None:
            groups.setdefault(k, []).append(r)
    out: list[Row] = []
    for r in rows:
        k = key(r)
        if k is None:
            out.append(r)
        elif groups.get(k):
            members = groups.pop(k)
            bad = [m for m in members if not m.match]
            text = "all match" if not bad else f"{len(bad)} differ: " + ", ".join(m.figure for m in bad[:3])
            out.append(Row(f"{k} (each)", f"{len(members)} figures", text, not bad))
    return out


def _stem(name: str) -> str:
    parts = name.replace("[", ".[").split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else name
