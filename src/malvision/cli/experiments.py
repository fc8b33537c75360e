"""Experiment commands: train, evaluate, gradients, train-detector, bundle, models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from malvision.cli.app import app, err, invoked_argv, out, progress, world_size
from malvision.cli.options import DataOpt, KindOpt, ModelKw, dataset_for, train_config
from malvision.cli.render import class_table, models_table
from malvision.errors import MalvisionError


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Registered model name (see `malvision models`).")
    ],
    data: DataOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    sets: ModelKw = None,
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Samples per step (per process under torchrun).")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 2e-3,
    patience: Annotated[
        int, typer.Option(help="Stop after this many epochs without a better val macro-F1.")
    ] = 5,
    max_len: Annotated[int | None, typer.Option(help="Crop sequences to their first N ids.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits, initialisation and batching.")] = 0,
    test_size: Annotated[
        float, typer.Option(help="Held-out test share (0: train on every sample, measure with benchmark).")
    ] = 0.2,
    group_split: Annotated[bool, typer.Option(help="Hold out whole groups (families/sources).")] = False,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    kind: KindOpt = None,
    image_size: Annotated[int, typer.Option(help="Image side when DATA is not a cache.")] = 64,
    resume: Annotated[bool, typer.Option(help="Continue from RUN/last.pt.")] = False,
) -> None:
    """Train a model: seeded held-out test, early stopping on val macro-F1, checkpoint + metrics + plots."""
    import json

    from malvision.evaluate.holdout import train_run

    cfg = train_config(model, sets, epochs, batch_size, lr, patience, max_len, seed, threads)
    ds = dataset_for(data, kind, image_size, max_len)
    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise MalvisionError(
            f"{out_dir}: run folder is not empty; pass --resume to continue it or pick another --out"
        )
    with progress() as bar:
        task = bar.add_task(f"training {model}", total=None)

        def on_step(step: int, total: int) -> None:
            bar.update(task, completed=step, total=total)

        def on_epoch(row: dict[str, float]) -> None:
            bar.console.print(
                f"epoch {int(row['epoch'])}: loss {row['train_loss']:.4f}  val acc {row['val_accuracy']:.4f}  "
                f"val macro-F1 {row['val_macro_f1']:.4f}",
                markup=False,
            )

        summary = train_run(
            ds,
            cfg,
            out_dir,
            test_size=test_size,
            grouped=group_split,
            resume=resume,
            on_epoch=on_epoch,
            on_step=on_step,
            command=_launcher() + "malvision " + " ".join(sys.argv[1:]),
            recipe=_recipe(ds, ctx),
        )
    if summary and summary["test"] is None:
        out.print(
            f"trained on all {summary['n_train']} samples; model in {out_dir / 'best.pt'}", markup=False
        )
    elif summary:
        t = summary["test"]
        keys = ("n", "accuracy", "macro_f1", "roc_auc", "tpr_at_1pct_fpr")
        out.print(json.dumps({k: t[k] for k in keys if k in t}), markup=False, soft_wrap=True)
        out.print(
            f"best checkpoint: {out_dir / 'best.pt'}; plots and metrics.json in {out_dir}", markup=False
        )


def _launcher() -> str:
    """``torchrun --nproc-per-node N `` when this run is one of N data-parallel processes (each takes
    ``--batch-size`` rows a step, so the recorded command must say how many there were), else empty."""
    return f"torchrun --nproc-per-node {world_size()} " if world_size() > 1 else ""


def _recipe(ds: Any, ctx: typer.Context) -> dict[str, Any] | None:
    """The run's recipe; marked incomplete under torchrun, which ``reproduce`` (one process, so half the
    rows a step or fewer) cannot run again as it was."""
    from malvision.recipe import make_recipe

    recipe = make_recipe(ds, invoked_argv(ctx), "{run}/best.pt")
    if recipe is not None and world_size() > 1:
        recipe["incomplete"] = (
            f"trained under torchrun with {world_size()} processes ({world_size()} x --batch-size rows a step); "
            "run its steps (the card's recipe.steps) under torchrun"
        )
    return recipe


@app.command()
def evaluate(
    run: Annotated[str | None, typer.Argument(help="Run folder or checkpoint file.")] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Dataset to score on.")] = None,
    model_ref: Annotated[
        str | None, typer.Option("--model", help="A bundled model name instead of RUN.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write metrics.json and confusion.png here.")
    ] = None,
    extra: Annotated[list[Path] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Score a trained or bundled model: accuracy, macro-F1, per-class P/R/F1, confusion matrix, ROC."""
    import json

    from malvision.bundled import resolve_checkpoint
    from malvision.checkpoint import load_checkpoint
    from malvision.convert.spec import ConvertSpec
    from malvision.evaluate.holdout import split_ids
    from malvision.evaluate.plots import plot_confusion
    from malvision.evaluate.runner import caveats, evaluate_checkpoint

    rest = [Path(run)] if model_ref is not None and run is not None else []  # `evaluate --model NAME DATA`
    rest += extra or []  # `evaluate RUN DATA`
    run = None if model_ref is not None else run
    if data is None and rest:
        data = rest.pop(0)
    if rest:
        raise MalvisionError(
            f"evaluate takes one model and one dataset; left over: {' '.join(map(str, rest))}"
        )
    if data is None:
        raise MalvisionError("no data: pass --data DATA (or `--model NAME DATA`)")
    path = resolve_checkpoint(model_ref or run or "")
    ck = load_checkpoint(path)
    spec = ConvertSpec.from_dict(ck.spec)
    ds = dataset_for(data, spec.kind, spec.image_size, spec.max_len if spec.kind != "image" else None)
    m = evaluate_checkpoint(ck, ds, seen=split_ids(path))
    if out_dir is not None:
        from malvision.io import atomic_writer

        with atomic_writer(out_dir / "metrics.json") as f:
            f.write(json.dumps(m, indent=2).encode())
        plot_confusion(
            m["confusion_matrix"], m["classes"], out_dir / "confusion.png", f"{ck.model_name} on {data.name}"
        )
    if as_json:
        print(json.dumps(m))
        return
    out.print(class_table(m, f"{ck.model_name} on {data} (n={m['n']})"))
    for text in caveats(m):
        err.print(text, markup=False, soft_wrap=True)
    if "unseen" in m:
        u = m["unseen"]
        out.print(
            f"on the {u['n']} unseen samples: accuracy {u['accuracy']:.4f}   macro-F1 {u['macro_f1']:.4f}"
        )
    line = f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}"
    if "threshold" in m:  # a detector's files called as scan calls them
        line = f"at the threshold {m['threshold']:.4f} (scan's verdicts): {line}"
    if m.get("roc_auc") is not None:
        line += f"   ROC-AUC {m['roc_auc']:.4f}   TPR@1%FPR {m['tpr_at_1pct_fpr']:.4f}   TPR@0.1%FPR {m['tpr_at_0.1pct_fpr']:.4f}"
    out.print(line, markup=False)


@app.command()
def gradients(
    models: Annotated[str, typer.Option(help="Comma-separated recurrent models.")] = "rnn,lstm,gru",
    data: DataOpt = Path("."),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("gradients"),
    seq_len: Annotated[int, typer.Option(help="Steps for the gradient-norm curves.", min=1)] = 256,
    lengths: Annotated[str, typer.Option(help="Sequence lengths for accuracy-vs-length.")] = "16,64,256,1024",
    epochs: Annotated[int, typer.Option(help="Epochs per training.", min=1)] = 4,
    hidden: Annotated[int, typer.Option(help="Hidden units.", min=1)] = 64,
    max_train: Annotated[int, typer.Option(help="Training samples used (subsampled, seeded).", min=2)] = 3000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
) -> None:
    """The vanishing-gradient plot: ||dL/dh_t|| against t for RNN/LSTM/GRU, and accuracy against length."""
    import json

    from malvision.evaluate.gradients import run_gradients

    ds = dataset_for(data, None, 64, None)
    if ds.spec.kind == "image":
        raise MalvisionError(f"{data}: the gradient experiment needs sequences (an opcode or bytes dataset)")
    try:
        lens = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--lengths takes whole numbers, e.g. 16,64,256, got {lengths!r}") from None
    if not lens or min(lens) < 1:
        raise typer.BadParameter(f"--lengths takes lengths of at least 1, got {lengths!r}")
    with progress() as bar:
        task = bar.add_task("gradients", total=None)
        summary = run_gradients(
            ds,
            [m.strip() for m in models.split(",")],
            out_dir,
            seq_len=seq_len,
            lengths=lens,
            epochs=epochs,
            hidden=hidden,
            max_train=max_train,
            threads=threads,
            seed=seed,
            on_progress=lambda s: bar.update(task, description=s),
        )
    out.print(json.dumps(summary, indent=2), markup=False, soft_wrap=True)
    out.print(f"plot: {out_dir / 'gradients.png'}", markup=False)


@app.command("train-detector")
def train_detector(
    ctx: typer.Context,
    data: DataOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: model.pt, card.json, roc.png.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Architecture.")] = "cnn",
    sets: ModelKw = None,
    folds: Annotated[int, typer.Option(help="Group-disjoint cross-validation folds.")] = 5,
    target_fpr: Annotated[
        float, typer.Option(help="False-positive rate the threshold is picked for.")
    ] = 0.001,
    protocols: Annotated[
        str | None,
        typer.Option(
            help="source (a fold per malware collection), group (--folds group-disjoint folds), or both "
            "comma-separated; the first sets the threshold. Default: source,group when the cache records "
            "collections, else group."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    patience: Annotated[int, typer.Option(help="Early-stopping patience.")] = 5,
    max_len: Annotated[int | None, typer.Option(help="Crop byte sequences to their first N bytes.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing.")] = 0.0,
    class_weighting: Annotated[
        bool, typer.Option(help="Weight the classes by inverse frequency in training.")
    ] = True,
    keep: Annotated[
        str,
        typer.Option(
            help="best: the epoch with the best validation macro-F1 (early stopping); last: every epoch, the last kept."
        ),
    ] = "best",
    group_power: Annotated[
        float,
        typer.Option(
            help="Trees and linear models: a file of a project or family with n training files weighs "
            "n^-P within its class, the class keeping its total weight (0: files weigh alike; 1: groups do)."
        ),
    ] = 0.0,
    group_classes: Annotated[
        str, typer.Option(help="The classes --group-power weighs, comma-separated, or all.")
    ] = "benign",
    type_power: Annotated[
        float,
        typer.Option(
            help="Trees and linear models: a benign file of a PE type (GUI, console, DLL) weighs (malware share "
            "/ benign share of the type)^P, the class keeping its total weight (0: files weigh alike)."
        ),
    ] = 0.0,
) -> None:
    """Build a malware/benign detector with a model card: group-disjoint CV, calibration, FPR threshold."""
    import json

    from malvision.detector import build_detector
    from malvision.recipe import make_recipe

    settings = (epochs, batch_size, lr, patience, max_len, seed, threads)
    cfg = train_config(
        model, sets, *settings, label_smoothing=label_smoothing, class_weighting=class_weighting, keep=keep,
        group_power=group_power, group_classes=group_classes, type_power=type_power,
    )  # fmt: skip
    ds = dataset_for(data, None, 64, None)
    command = "malvision " + " ".join(sys.argv[1:])
    with progress() as bar:
        task = bar.add_task("detector", total=None)
        card = build_detector(
            ds,
            cfg,
            out_dir,
            folds=folds,
            target_fpr=target_fpr,
            protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()) if protocols else None,
            command=command,
            recipe=make_recipe(ds, invoked_argv(ctx), "{run}/model.pt"),
            on_progress=lambda s: bar.update(task, description=s),
        )
    out.print(json.dumps(card["metrics"], indent=2), markup=False, soft_wrap=True)
    out.print(f"model with card: {out_dir / 'model.pt'}", markup=False)


@app.command()
def bundle(
    run: Annotated[Path, typer.Argument(help="A `train` or `train-detector` run folder.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write, with the model card.")],
    cv: Annotated[
        Path | None,
        typer.Option(
            help="A benchmark's leaderboard.json: the card's figures for a run trained on every sample."
        ),
    ] = None,
    cv_row: Annotated[str | None, typer.Option(help="The row of --cv (default: the run's model).")] = None,
) -> None:
    """Package a run's model with its card (split, metrics, training ids, command) for shipping."""
    from malvision.card import bundle_run

    dest = bundle_run(run, out_path, cv=cv, cv_row=cv_row)
    out.print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB)", markup=False)


@app.command("models")
def models_cmd() -> None:
    """List the registered architectures and the inputs they take."""
    from malvision.models import list_models, model_info

    out.print(models_table([model_info(n) for n in list_models()]))


@app.command("compare-detectors")
def compare_detectors(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Detector run folders (train-detector --protocols source, or a baseline's)."),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for board.md, board.json and roc.png.")
    ],
    heldout: Annotated[
        Path | None,
        typer.Option(
            help="A folder of benign files no model was trained on: each model's false positives.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    speed_files: Annotated[
        int, typer.Option(help="Files scanned to time each model (from --heldout).", min=1)
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0,
) -> None:
    """The detector leaderboard: every run on the same source-disjoint folds, file by file."""
    import json

    from malvision.evaluate.board import board_markdown, compare, measure, plot_board, read_run
    from malvision.io import atomic_writer, expand_inputs

    loaded = [read_run(r) for r in runs]
    files = sorted(p for p, _ in expand_inputs([heldout])) if heldout is not None else []
    if heldout is not None and not files:
        raise MalvisionError(f"{heldout}: no files to measure false positives on")
    with progress() as bar:
        task = bar.add_task("measuring", total=len(loaded))
        for r in loaded:
            measure(r, files, files[:speed_files])
            bar.advance(task)
    rows = compare(loaded, seed=seed)
    text = board_markdown(rows)
    with atomic_writer(out_dir / "board.md") as f:
        f.write(text.encode())
    with atomic_writer(out_dir / "board.json") as f:
        f.write(json.dumps(rows, indent=1, default=str).encode())
    plot_board(loaded, out_dir / "roc.png")
    out.print(text, markup=False, soft_wrap=True)
    out.print(f"board.md, board.json and roc.png in {out_dir}", markup=False)
