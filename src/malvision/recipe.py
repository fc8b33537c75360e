"""Recipes: the commands that rebuild a model's data and train it again, as its card records them.

A recipe is plain JSON kept in a model card::

    {"version": 1,
     "steps": [["data", "build", "--kind", "features", "--benign", "{home}/benign", ..., "--out", "{data}"],
               ["train-detector", "--data", "{data}", "--out", "{run}", "--model", "lgbm", ...]],
     "model": "{run}/model.pt", "data_hash": "...", "n_files": 5518}

Each step is a ``malvision`` command. Paths never name a machine: ``{home}`` is the cache home
(``~/.cache/malvision``), ``{shared}`` the project's ``../shared``, and ``{work}``, ``{data}`` (the cache)
and ``{run}`` (the run folder) sit in the scratch folder ``malvision reproduce`` works in. Shipped models
whose cards carry no recipe (made before recipes, or from a cache built before caches recorded their
command) or an incomplete one (figures from a benchmark) get theirs from ``SHIPPED`` (the commands of
``scripts/reproduce.sh`` that made them, checked against their cards by the tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from malvision.errors import MalvisionError

__all__ = [
    "RECIPE_VERSION",
    "SHIPPED",
    "CORPORA",
    "portable",
    "train_argv",
    "data_argv",
    "make_recipe",
    "recipe_for",
    "pin_conversion",
    "expand",
    "corpus_paths",
    "step_outputs",
]

RECIPE_VERSION = 1
# Options whose value is a path, in every command a recipe runs.
PATH_OPTIONS = frozenset(
    {
        "--benign",
        "--malware",
        "--malware-zip",
        "--opcodes",
        "--data",
        "-d",
        "--out",
        "-o",
        "--cv",
        "--heldout",
    }
)
CORPUS_OPTIONS = ("--benign", "--malware", "--malware-zip", "--opcodes")
# The commands a recipe may run: they read data and write only below their --out.
STEP_COMMANDS = ("data build", "train", "train-detector", "benchmark", "bundle")

# How to get each corpus a shipped recipe reads (in this order: later benign corpora leave out files
# of earlier ones). `scripts/build_corpora.sh` builds every one that is missing.
CORPORA: dict[str, str] = {
    "{home}/big2015_opcodes": "mkdir -p ~/.cache/malvision && tar -xJf ../shared/data/big2015_opcodes.tar.xz -C ~/.cache/malvision/",
    "{home}/benign": "SOURCES=DIR bash scripts/build_corpora.sh",
    "{home}/benign-extra": "SOURCES=DIR bash scripts/build_corpora.sh",
    "{home}/benign-tools": "SOURCES=DIR bash scripts/build_corpora.sh",
    "{home}/benign-gui": "SOURCES=DIR bash scripts/build_corpora.sh",
    "{home}/benign-calib": "SOURCES=DIR bash scripts/build_corpora.sh",
    "{home}/benign-win32": "SOURCES=DIR bash scripts/build_corpora.sh (after `dpkg --add-architecture i386`)",
    "{home}/malware_v2": "SOURCES=DIR bash scripts/build_corpora.sh (DIR: the fetched malware collections)",
    "{home}/benign-github": "SOURCES=DIR bash scripts/build_corpora.sh (DIR: the fetched repositories of "
    "scripts/benign_github.csv)",
    "{home}/benign-github2": "SOURCES=DIR bash scripts/build_corpora.sh (DIR: the fetched repositories of "
    "scripts/benign_github2.csv)",
    "{home}/benign-github3": "SOURCES=DIR bash scripts/build_corpora.sh (DIR: the fetched repositories of "
    "scripts/benign_github3.csv)",
    "{home}/benign-github4": "SOURCES=DIR bash scripts/build_corpora.sh (DIR: the fetched repositories of "
    "scripts/benign_github4.csv)",
    "{home}/benign-bulk": "SOURCES=DIR bash scripts/build_corpora.sh",
    "{home}/benign-github5": "SOURCES=DIR bash scripts/build_corpora.sh (DIR: the fetched repositories of "
    "scripts/benign_github5.csv)",
    "{shared}/data/thezoo_pe_malware.zip": "it ships in ../shared/data",
}

_BIG2015 = {
    "version": RECIPE_VERSION,
    "steps": [
        ["data", "build", "--opcodes", "{home}/big2015_opcodes", "--max-len", "1000000", "--out", "{data}"],
        # the card's figures: 5-fold CV of the recipe (the ngram-offsets row of reproduce.sh big2015_offsets)
        ["benchmark", "--full", "--data", "{data}", "--out", "{work}/cv", "--folds", "5", "--grouped", "no",
         "--threads", "1", "--models", "ngram-offsets=ngram", "--set", "ngram-offsets.classifier=lgbm",
         "--set", "ngram-offsets.top_k=3000", "--set", "ngram-offsets.min_df=5",
         "--set", "ngram-offsets.col_wise=true", "--set", "ngram-offsets.knn_bits=1024",
         "--set", "ngram-offsets.offset_folds=3"],
        ["train", "--model", "ngram", "--data", "{data}", "--out", "{run}", "--test-size", "0", "--threads", "1",
         "--set", "classifier=lgbm", "--set", "top_k=3000", "--set", "min_df=5", "--set", "col_wise=true",
         "--set", "knn_bits=1024", "--set", "offset_folds=3"],
        ["bundle", "{run}", "--out", "{work}/model.pt", "--cv", "{work}/cv/stratified/leaderboard.json",
         "--cv-row", "ngram-offsets"],
    ],
    "model": "{work}/model.pt",
    "data_hash": "a94a2f26c2c51f7ec12c564b1b3d7b1cb433db66d16230c2e56bd07f07e520c3",
    "n_files": 8887,
}  # fmt: skip
# Bundled name -> recipe, for the shipped models whose cards carry none (cards older than recipes) or an
# incomplete one (figures from a benchmark, which a card does not record).
SHIPPED: dict[str, dict[str, Any]] = {
    "big2015-opcodes": _BIG2015,
}


def _places() -> dict[str, Path]:
    from malvision.data.build import cache_home, shared_dir

    places = {"home": cache_home()}
    if (shared := shared_dir()) is not None:
        places["shared"] = shared
    return places


def portable(path: Path | str) -> str:
    """An absolute path written as ``{home}/...`` or ``{shared}/...`` where it lies below one."""
    p = Path(path).expanduser().absolute()
    # ``..`` folded away too (``repo/../shared`` is ``{shared}``), with and without symlinks resolved
    for q in (Path(os.path.normpath(p)), p.resolve()):
        for name, root in _places().items():
            for base in (root.absolute(), root.resolve()):
                if q.is_relative_to(base):
                    rel = q.relative_to(base).as_posix()
                    return f"{{{name}}}" + ("" if rel == "." else f"/{rel}")
    return str(p)


def _options(argv: list[str]) -> list[str]:
    """``--opt=value`` split into ``--opt value``."""
    out: list[str] = []
    for a in argv:
        if a.startswith("--") and "=" in a and a.split("=", 1)[0] in PATH_OPTIONS:
            out.extend(a.split("=", 1))
        else:
            out.append(a)
    return out


def _rewrite(argv: list[str], fixed: dict[str, str]) -> list[str]:
    """``argv`` with the values of ``fixed`` options replaced and other paths made portable."""
    argv = _options(argv)
    out: list[str] = []
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev in fixed:
            out.append(fixed[prev])
        elif prev in PATH_OPTIONS:
            out.append(portable(a))
        else:
            out.append(a)
    return out


def data_argv(argv: list[str]) -> list[str]:
    """A ``data build`` command line as a recipe step: its ``--out`` is ``{data}``."""
    return _rewrite(argv, {"--out": "{data}", "-o": "{data}"})


def train_argv(argv: list[str]) -> list[str]:
    """A ``train`` / ``train-detector`` command line as a recipe step: ``--data {data} --out {run}``
    (``--resume`` left out: a reproduction starts afresh)."""
    steps = _rewrite(argv, {"--data": "{data}", "-d": "{data}", "--out": "{run}", "-o": "{run}"})
    return [a for a in steps if a != "--resume"]


def make_recipe(ds: Any, argv: list[str], model: str) -> dict[str, Any] | None:
    """The recipe of a model trained by ``argv`` on cache ``ds``; None when the cache does not record
    the command that built it (a cache older than recipes)."""
    built = (getattr(ds, "meta", None) or {}).get("command")
    if not built:
        return None
    return {
        "version": RECIPE_VERSION,
        "steps": [data_argv(list(built)), train_argv(list(argv))],
        "model": model,
        "data_hash": getattr(ds, "data_hash", None),
        "n_files": len(ds),
    }


def recipe_for(name: str | None, card: dict[str, Any]) -> dict[str, Any]:
    """A model's recipe: its card's, or the shipped one of bundled model ``name`` when the card's is missing
    or incomplete (figures from a benchmark); checked."""
    recipe = card.get("recipe")
    if (not isinstance(recipe, dict) or recipe.get("incomplete")) and (name or "") in SHIPPED:
        recipe = SHIPPED[name or ""]
    if not recipe or not isinstance(recipe, dict):
        raise MalvisionError(
            f"{name}: its card records no recipe (made before recipes, or bundled from a benchmark's --cv "
            "figures); train it again with this malvision to record one"
        )
    if recipe.get("incomplete"):
        raise MalvisionError(f"{name}: its recipe is incomplete: {recipe['incomplete']}")
    steps = recipe.get("steps")
    if recipe.get("version") != RECIPE_VERSION or not isinstance(steps, list) or not steps:
        raise MalvisionError(
            f"{name}: recipe version {recipe.get('version')!r} is not one this malvision runs"
        )
    for step in steps:
        if not isinstance(step, list) or not all(isinstance(a, str) for a in step):
            raise MalvisionError(f"{name}: a recipe step is not a list of arguments")
        _check_step(name, step)
    return recipe


def pin_conversion(recipe: dict[str, Any], spec: Any) -> dict[str, Any]:
    """``recipe`` with ``--kind-version`` on its data step when the model (``spec``, its ``ConvertSpec``)
    reads an older conversion of its kind than this malvision builds: a card from before the new version,
    whose data command had no need to say which it built."""
    from malvision.convert.spec import KIND_VERSIONS, SPEC_VERSION

    if spec.version == KIND_VERSIONS.get(spec.kind, SPEC_VERSION):
        return recipe
    steps = []
    for step in recipe["steps"]:
        args = _options(step)
        kind = args[args.index("--kind") + 1] if "--kind" in args[:-1] else None
        if step[:2] == ["data", "build"] and kind == spec.kind and "--kind-version" not in args:
            at = step.index("--out") if "--out" in step else len(step)
            step = [*step[:at], "--kind-version", str(spec.version), *step[at:]]
        steps.append(step)
    return {**recipe, "steps": steps}


def step_outputs(step: list[str]) -> list[str]:
    """The folders a recipe step writes: the values of its ``--out`` / ``-o`` options."""
    args = _options(step)
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "-o")]


def _check_step(name: str | None, step: list[str]) -> None:
    """Refuse a step that is not one of the training commands or writes outside the scratch folder."""
    head = " ".join(step[:2]) if step[:1] == ["data"] else step[0] if step else ""
    if head not in STEP_COMMANDS:
        raise MalvisionError(
            f"{name}: recipe step {head!r} is not one reproduce runs ({', '.join(STEP_COMMANDS)})"
        )
    for out in step_outputs(step):
        if not out.startswith(("{work}", "{data}", "{run}")):
            raise MalvisionError(f"{name}: recipe step {head} writes to {out}, outside the scratch folder")


def expand(arg: str, places: dict[str, Path]) -> str:
    """``{home}/benign`` -> ``/root/.cache/malvision/benign`` (``places``: name -> folder)."""
    for name, root in places.items():
        key = f"{{{name}}}"
        if arg.startswith(key):
            return str(root) + arg[len(key) :]
    if arg.startswith("{"):
        raise MalvisionError(f"{arg}: names a folder this machine does not have (no ../shared here?)")
    return arg


def corpus_paths(steps: list[list[str]]) -> list[str]:
    """Every corpus a recipe's steps read (unexpanded), in order."""
    found: list[str] = []
    for step in steps:
        args = _options(step)
        for i, a in enumerate(args[:-1]):
            if a in CORPUS_OPTIONS and args[i + 1] not in found:
                found.append(args[i + 1])
    return found
