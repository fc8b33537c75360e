"""``malvision benchmark``: the k-fold architecture leaderboard, quick (prefixes) or ``--full`` (whole
samples), with named rows for ablations and ensemble rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from malvision.cli.app import app, out, progress
from malvision.cli.options import DataOpt, KindOpt, ModelKw, dataset_for, parse_kwargs, train_config
from malvision.errors import MalvisionError

QUICK_MODELS = "cnn,rnn,lstm,gru,crnn,malconv"
FULL_MODELS = "ngram,malconv"
TRAIN_KEYS = ("max_len", "epochs", "batch_size", "lr", "patience", "class_weighting", "vocab_size")


def _rows(models: str) -> list[tuple[str, str]]:
    """'ngram,uni=ngram' -> [(row name, model)]: a row is a model, or ``name=model`` for a variant."""
    rows = []
    for item in (m.strip() for m in models.split(",")):
        if item:
            name, _, model = item.rpartition("=")
            rows.append((name.strip() or model.strip(), model.strip()))
    if not rows:
        raise MalvisionError("--models names no model")
    return rows


def _configs(rows: list[tuple[str, str]], sets: list[str] | None, base: dict[str, Any]) -> list[Any]:
    """One ``TrainConfig`` a row: ``--set key=value`` applies to every row, ``--set ROW.key=value`` to one
    (training settings too: ``--set rnn.max_len=512 --set cnn.epochs=8``)."""
    per_row: dict[str | None, list[str]] = {}
    for item in sets or []:
        key = item.partition("=")[0]
        target = key.split(".", 1)[0] if "." in key else None
        per_row.setdefault(target, []).append(item.split(".", 1)[1] if target else item)
    if unknown := sorted(set(per_row) - {None} - {name for name, _ in rows}):
        raise MalvisionError(f"--set names no row: {', '.join(unknown)}")
    configs = []
    for name, model in rows:
        kw = parse_kwargs((per_row.get(None) or []) + (per_row.get(name) or []))
        train_kw = {k: kw.pop(k) for k in TRAIN_KEYS if k in kw}
        model_sets = [f"{k}={json.dumps(v)}" for k, v in kw.items()]
        named = {"name": name} if name != model else {}
        configs.append(train_config(model, model_sets, **(base | train_kw | named)))
    return configs


def _check_full(ds: Any, configs: list[Any], data: Path) -> None:
    """``--full``: every row reads whole samples in bounded memory, from a cache that cut none."""
    from malvision.models import model_info

    if ds.spec.fixed_shape is not None:
        raise MalvisionError(f"{data}: --full is for sequences (opcodes or bytes), this is {ds.spec.kind}")
    if prefix := [c.label for c in configs if not model_info(c.model).reads_whole]:
        raise MalvisionError(
            f"--full reads whole samples; {', '.join(prefix)} read a prefix (memory grows with length). "
            f"Use models that read whole samples: {FULL_MODELS}"
        )
    if cut := [c.label for c in configs if c.max_len]:
        raise MalvisionError(f"--full reads whole samples; drop max_len for {', '.join(cut)}")
    longest = int(ds.lengths.max())
    if longest >= ds.spec.max_len:
        raise MalvisionError(
            f"{data}: the cache cuts samples at {ds.spec.max_len:,} tokens; rebuild it with "
            f"`malvision data build --max-len N` and N above the longest sample"
        )


@app.command()
def benchmark(
    models: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated rows: a model name, or NAME=MODEL for a variant set with --set NAME.key=v "
            f"(default {QUICK_MODELS}; with --full {FULL_MODELS})."
        ),
    ] = None,
    data: DataOpt = Path("."),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Leaderboard folder.")] = Path("leaderboard"),
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    sets: ModelKw = None,
    ensemble: Annotated[
        list[str] | None,
        typer.Option(help="A row scoring the mean probability of rows A+B(+...), at their summed cost."),
    ] = None,
    full: Annotated[
        bool, typer.Option(help="Whole samples, no prefix: models that read any length in bounded memory.")
    ] = False,
    epochs: Annotated[int, typer.Option(help="Most epochs per fold.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 3,
    max_len: Annotated[int | None, typer.Option(help="Crop sequences to their first N ids.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for folds and training.")] = 0,
    grouped: Annotated[
        str,
        typer.Option(
            help="auto: add a group-disjoint run where groups exist; yes; no; only (group-disjoint alone)."
        ),
    ] = "auto",
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    kind: KindOpt = None,
    image_size: Annotated[int, typer.Option(help="Image side when DATA is not a cache.")] = 64,
) -> None:
    """k-fold leaderboard of several architectures: Markdown table, per-class precision and recall, PNG
    and confusion matrices (+ a group-disjoint variant).

    Fold results are kept in OUT/<split>/<row>/fold<k>/: a rerun (or a run with more rows) reuses them,
    so a long ``--full`` run resumes where it stopped.
    """
    from malvision.evaluate.leaderboard import run_leaderboard

    if full and max_len:
        raise MalvisionError("--full reads whole samples; drop --max-len")
    if grouped not in ("auto", "yes", "no", "only"):
        raise MalvisionError(f"--grouped {grouped!r}: use auto, yes, no or only")
    rows = _rows(models or (FULL_MODELS if full else QUICK_MODELS))
    ensembles = [tuple(m.strip() for m in e.split("+")) for e in ensemble or []]
    if bad := [e for e in ensembles if len(e) < 2 or "" in e]:
        raise MalvisionError(f"--ensemble {'+'.join(bad[0])}: name two or more rows joined by +")
    base = dict(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, max_len=max_len)
    configs = _configs(rows, sets, base | dict(seed=seed, threads=threads))
    ds = dataset_for(data, kind, image_size, max_len)
    if full:
        _check_full(ds, configs, data)
    has_groups = len(set(ds.groups)) > len(ds.classes)
    runs = [] if grouped == "only" else [False]
    if grouped in ("yes", "only") or (grouped == "auto" and has_groups):
        runs.append(True)
    with progress() as bar:
        step = bar.add_task("this fold", total=None)

        def on_step(done: int, total: int) -> None:
            bar.update(step, completed=done, total=total)

        for g in runs:
            task = bar.add_task("group-disjoint" if g else "stratified", total=len(configs) * folds)

            def on_fold(name: str, k: int, r: dict[str, Any], task: Any = task) -> None:
                m = r["metrics"]
                bar.console.print(
                    f"{name} fold {k}: acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}", markup=False
                )
                bar.advance(task)

            sub = out_dir / ("group-disjoint" if g else "stratified")
            run_leaderboard(
                ds, configs, sub, folds=folds, seed=seed, grouped=g, ensembles=ensembles, on_fold=on_fold,
                on_step=on_step,
            )  # fmt: skip
            out.print((sub / "leaderboard.md").read_text(), markup=False, soft_wrap=True)
            out.print(f"table, PNG and confusion matrices in {sub}", markup=False)
