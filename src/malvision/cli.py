"""The ``malvision`` command: parses, calls the library, prints. Errors become one line and an exit code."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from malvision.errors import MalvisionError

app = typer.Typer(
    name="malvision",
    help="Detect and classify malware from a file's bytes seen as an image and as a sequence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and build datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Exit codes, as ClamAV: 0 all well, 1 malware found (scan only), 2 errors (the run goes on and
# lists them at the end), 130 interrupted.
EXIT_OK, EXIT_FOUND, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

out = Console()
err = Console(stderr=True)


def parse_size(text: str) -> int:
    """'8G', '300M', '64k' or a plain byte count -> bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t)
    except ValueError:
        raise typer.BadParameter(f"not a size: {text!r} (e.g. 8G, 300M, 4096)") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise typer.BadParameter(f"size must be positive: {text!r}")
    return int(value * mult)


def progress() -> Progress:
    """The progress bar used by every long command (on stderr, hidden when not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # else it still leaves a blank line on a redirected stderr
    )


def clean(text: str) -> str:
    """``text`` safe for a terminal, on one line: control characters, bidi overrides and undecodable
    bytes of file names shown as escapes (``\\x1b``, ``\\n``, ``\\udce9``)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def report_failures(failures: list[tuple[str, str]]) -> None:
    """Print each failed input on one line at the end of a batch run."""
    if failures:
        err.print(f"[red]{len(failures)} input(s) failed:[/red]")
        for name, msg in failures:
            line = f"error: {msg}" if msg.startswith(name) else f"error: {name}: {msg}"
            err.print(clean(line), markup=False, highlight=False, soft_wrap=True)  # one line, never wrapped


MaxSize = Annotated[str, typer.Option("--max-size", help="Refuse inputs larger than this (e.g. 8G, 500M).")]


@app.command()
def convert(
    inputs: Annotated[
        list[Path], typer.Argument(help="Files, folders (recursive) or sample zips.", readable=False)
    ],  # we report it
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    fmt: Annotated[
        str, typer.Option("--format", help="png: one byte plot per file; dataset: one cache.")
    ] = "png",
    kind: Annotated[str, typer.Option(help="dataset only: image, bytes or opcodes.")] = "image",
    image_size: Annotated[int, typer.Option(help="dataset only: side of the square image.")] = 64,
    max_len: Annotated[int, typer.Option(help="dataset only: bytes/opcodes kept per file.")] = 2
    * 1024
    * 1024,
    label: Annotated[str | None, typer.Option(help="dataset only: label for every file.")] = None,
    max_size: MaxSize = "8G",
    png_level: Annotated[
        int, typer.Option(min=0, max=9, help="png only: zlib level (1 fast, 9 smallest).")
    ] = 1,
    zip_password: Annotated[
        str | None, typer.Option(help="png only: convert the entries of .zip inputs (read in memory).")
    ] = None,
) -> None:
    """Convert binaries to Nataraj byte-plot PNGs (mirroring the input tree) or a dataset cache."""
    from malvision.convert.image import iter_plot_rows, plot_shape, write_png
    from malvision.io import atomic_writer
    from malvision.sources import iter_sources

    limit = parse_size(max_size)
    if fmt == "dataset":
        from malvision.data.cache_write import build_cache_from_paths

        n, failures = build_cache_from_paths(
            inputs,
            out_dir,
            kind=kind,
            image_size=image_size,
            max_len=max_len,
            label=label,
            max_size=limit,
            progress=progress(),
        )
        out.print(f"wrote {n} samples to {out_dir}", markup=False)
        report_failures(failures)
        raise typer.Exit(EXIT_ERROR if failures else 0)
    if fmt != "png":
        raise MalvisionError(f"unknown --format {fmt!r}; use png or dataset")
    items = list(iter_sources(inputs, zip_password=zip_password, max_size=limit))
    failures: list[tuple[str, str]] = []
    written = 0
    claimed: dict[Path, str] = {}  # destination -> input, so two inputs never share one PNG
    with progress() as bar:
        task = bar.add_task("converting", total=len(items))
        for name, rel, opener in items:
            try:
                src = opener()
                height, width = plot_shape(src.size)
                dest = out_dir / rel.parent / f"{rel.name}.png"
                if claimed.setdefault(dest, name) != name:
                    raise MalvisionError(f"{name}: {dest} is already the output of {claimed[dest]}")
                with atomic_writer(dest) as f:
                    write_png(f, iter_plot_rows(src.chunks(), src.size), height, width, png_level)
                written += 1
            except MalvisionError as e:
                failures.append((name, str(e)))
            bar.advance(task)
    out.print(f"wrote {written} PNG(s) to {out_dir}", markup=False)
    report_failures(failures)
    if failures:
        raise typer.Exit(EXIT_ERROR)


@data_app.command("info")
def data_info(
    data: Annotated[Path, typer.Argument(help="Folder, sample zip, labels CSV, BIG2015 folder or cache.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Skip detection: zip, cache, big2015, malimg, opcodes, csv, binary."),
    ] = None,
    label: Annotated[str | None, typer.Option(help="zip only: one label for all (default: family).")] = None,
    password: Annotated[str, typer.Option(help="zip only: password.")] = "infected",
) -> None:
    """Counts per class and group, sample sizes and, for caches, the conversion settings."""
    from rich.table import Table

    from malvision.data.detect import open_dataset
    from malvision.data.summary import summarize
    from malvision.io import human_size

    ds = open_dataset(data, format=fmt, label=label, password=password)
    try:
        s = summarize(ds)
    finally:
        if hasattr(ds, "close"):
            ds.close()
    out.print(
        f"{s.name} ({s.format}): {s.n} samples, {len(s.classes)} classes, {s.n_groups} groups", markup=False
    )
    table = Table()
    for col in ("class", "samples", "share", "groups", "median size"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in s.classes:
        share = f"{100 * c.n / max(s.n, 1):.1f}%"
        table.add_row(
            escape(clean(c.label)), str(c.n), share, str(c.groups or "-"), human_size(c.median_size)
        )
    out.print(table)
    lo, med, mean, hi = s.sizes
    out.print(f"sizes: min {human_size(lo)}, median {human_size(med)}, ", end="")
    out.print(f"mean {human_size(mean)}, max {human_size(hi)}")
    if s.top_groups:
        out.print("largest groups: " + ", ".join(f"{g} ({n})" for g, n in s.top_groups), markup=False)
    if s.lengths is not None:
        lo, med, mean, hi = s.lengths
        out.print(f"tokens per sample: min {lo}, median {med:.0f}, mean {mean:.0f}, max {hi}")
    if s.spec is not None:
        out.print("spec: " + ", ".join(f"{k}={v}" for k, v in s.spec.items()), markup=False)
    if s.skipped:
        err.print(f"[yellow]{len(s.skipped)} entr(ies) skipped while listing, e.g.:[/yellow]")
        for _, msg in s.skipped[:5]:
            err.print(f"  {clean(msg)}", markup=False, soft_wrap=True)


@data_app.command("build")
def data_build(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Cache folder to create.")],
    kind: Annotated[
        str, typer.Option(help="image, bytes or features (PE set); opcodes (BIG2015).")
    ] = "image",
    image_size: Annotated[int, typer.Option(help="Side of the square image.")] = 64,
    max_len: Annotated[int | None, typer.Option(help="Bytes/opcodes kept per sample (default 2 Mi).")] = None,
    benign: Annotated[
        list[Path] | None,
        typer.Option(
            help="Benign corpus (pe/ + manifest_ext.csv); repeat to combine several, each file kept once; "
            "default ~/.cache/malvision/benign."
        ),
    ] = None,
    malware_zip: Annotated[
        Path | None, typer.Option(help="Malware sample zip; default ../shared/data/thezoo_pe_malware.zip.")
    ] = None,
    opcodes: Annotated[
        Path | None, typer.Option(help="Build the BIG2015 opcode cache from this folder instead.")
    ] = None,
    all_kinds: Annotated[bool, typer.Option(help="Keep non-PE zip entries too.")] = False,
    password: Annotated[str, typer.Option(help="Malware zip password.")] = "infected",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing cache at --out.")] = False,
    keep_duplicates: Annotated[
        bool, typer.Option(help="Keep exact copies of a sample (default: drop).")
    ] = False,
    max_size: MaxSize = "8G",
) -> None:
    """Build a training cache: PE malware vs benign (label malware/benign) or BIG2015 opcodes (family)."""
    import time

    from malvision.data.build import build_detection_cache, build_opcode_cache
    from malvision.data.cache import CachedDataset

    start = time.monotonic()
    dedupe = not keep_duplicates
    if opcodes is not None or kind == "opcodes":
        n, failures = build_opcode_cache(
            out_dir, opcodes, max_len, progress=progress(), overwrite=overwrite, dedupe=dedupe
        )
    else:
        n, failures = build_detection_cache(
            out_dir,
            kind=kind,
            image_size=image_size,
            max_len=max_len,
            benign_dir=benign or None,
            malware_zip=malware_zip,
            all_kinds=all_kinds,
            password=password,
            max_size=parse_size(max_size),
            progress=progress(),
            overwrite=overwrite,
            dedupe=dedupe,
        )
    out.print(f"wrote {n} samples to {out_dir} in {time.monotonic() - start:.1f} s", markup=False)
    dups = CachedDataset(out_dir).meta.get("duplicates", [])
    if dups:
        conflicts = sum(1 for d in dups if d[1] != d[3])
        out.print(
            f"left out {len(dups)} exact duplicate(s), {conflicts} of them labelled differently "
            "(listed in meta.json; --keep-duplicates keeps them)",
            markup=False,
        )
    report_failures(failures)
    if failures:
        raise typer.Exit(EXIT_ERROR)


def parse_kwargs(items: list[str] | None) -> dict[str, Any]:
    """['hidden=64', 'pool="last"', 'bidirectional=true'] -> a dict (values read as JSON when they parse)."""
    import json

    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set takes key=value, got {item!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def _names(names: list[str], most: int = 4) -> str:
    """``a, b, c, d +3 more``: a short list for a table cell."""
    more = f" +{len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _train_config(model: str, sets: list[str] | None, **kw: Any) -> Any:
    from malvision.train import TrainConfig

    return TrainConfig(
        model=model, model_kwargs=parse_kwargs(sets), **{k: v for k, v in kw.items() if v is not None}
    )


def _dataset_for(data: Path, kind: str | None, image_size: int, max_len: int | None) -> Any:
    from malvision.convert.spec import ConvertSpec
    from malvision.evaluate.runner import open_cache

    spec = None
    if kind is not None:
        spec = ConvertSpec(kind=kind, image_size=image_size, **({"max_len": max_len} if max_len else {}))  # type: ignore[arg-type]
    with progress() as bar:
        return open_cache(data, spec, progress=bar)


ModelKw = Annotated[list[str] | None, typer.Option("--set", help="Model keyword, key=value (repeatable).")]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Cache folder or any dataset malvision reads.")]
KindOpt = Annotated[
    str | None, typer.Option(help="Input kind when DATA is not a cache: image, bytes, opcodes.")
]


@app.command()
def train(
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
    test_size: Annotated[float, typer.Option(help="Held-out test share.")] = 0.2,
    group_split: Annotated[bool, typer.Option(help="Hold out whole groups (families/sources).")] = False,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    kind: KindOpt = None,
    image_size: Annotated[int, typer.Option(help="Image side when DATA is not a cache.")] = 64,
    resume: Annotated[bool, typer.Option(help="Continue from RUN/last.pt.")] = False,
) -> None:
    """Train a model: seeded held-out test, early stopping on val macro-F1, checkpoint + metrics + plots."""
    import json

    from malvision.evaluate.holdout import train_run

    cfg = _train_config(
        model,
        sets,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        max_len=max_len,
        seed=seed,
        threads=threads,
    )
    ds = _dataset_for(data, kind, image_size, max_len)
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
            command="malvision " + " ".join(sys.argv[1:]),
        )
    if summary:
        t = summary["test"]
        keys = ("n", "accuracy", "macro_f1", "roc_auc", "tpr_at_1pct_fpr")
        out.print(json.dumps({k: t[k] for k in keys if k in t}), markup=False, soft_wrap=True)
        out.print(
            f"best checkpoint: {out_dir / 'best.pt'}; plots and metrics.json in {out_dir}", markup=False
        )


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
    from malvision.evaluate.plots import plot_confusion
    from malvision.evaluate.runner import evaluate_checkpoint

    if model_ref is not None and run is not None and data is None:
        data, run = Path(run), None  # `evaluate --model NAME DATA`
    if data is None:
        raise MalvisionError("no data: pass --data DATA (or `--model NAME DATA`)")
    ck = load_checkpoint(resolve_checkpoint(model_ref or run or ""))
    spec = ConvertSpec.from_dict(ck.spec)
    ds = _dataset_for(data, spec.kind, spec.image_size, spec.max_len if spec.kind != "image" else None)
    m = evaluate_checkpoint(ck, ds)
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
    from rich.table import Table

    table = Table(title=escape(f"{ck.model_name} on {data} (n={m['n']})"))
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, r in m["per_class"].items():
        table.add_row(
            escape(c), f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"])
        )
    out.print(table)
    if m.get("n_seen_in_training"):
        err.print(
            f"warning: {m['n_seen_in_training']} of {m['n']} samples were used to train this model",
            markup=False,
        )
        if "unseen" in m:
            u = m["unseen"]
            out.print(
                f"on the {u['n']} unseen samples: accuracy {u['accuracy']:.4f}   macro-F1 {u['macro_f1']:.4f}",
                markup=False,
            )
    line = f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}"
    if m.get("roc_auc") is not None:
        line += f"   ROC-AUC {m['roc_auc']:.4f}   TPR@1%FPR {m['tpr_at_1pct_fpr']:.4f}   TPR@0.1%FPR {m['tpr_at_0.1pct_fpr']:.4f}"
    out.print(line, markup=False)


@app.command()
def benchmark(
    models: Annotated[
        str, typer.Option(help="Comma-separated model names.")
    ] = "cnn,rnn,lstm,gru,crnn,malconv",
    data: DataOpt = Path("."),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Leaderboard folder.")] = Path("leaderboard"),
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    sets: ModelKw = None,
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
    """k-fold leaderboard of several architectures: Markdown table + PNG (+ a group-disjoint variant).

    Fold results are kept in OUT/<split>/<model>/fold<k>/: a rerun (or a run with more models) reuses them.
    """
    import json

    from malvision.evaluate.leaderboard import run_leaderboard

    ds = _dataset_for(data, kind, image_size, max_len)
    names = [m.strip() for m in models.split(",") if m.strip()]
    per_model = {}
    for item in sets or []:  # --set MODEL.key=value applies to one model, key=value to all
        key = item.partition("=")[0]
        target = key.split(".", 1)[0] if "." in key else None
        per_model.setdefault(target, []).append(item.split(".", 1)[1] if target else item)
    configs = []
    for n in names:
        # Training settings may be set per model too: --set rnn.max_len=512 --set cnn.epochs=8.
        kw = parse_kwargs((per_model.get(None) or []) + (per_model.get(n) or []))
        train_keys = ("max_len", "epochs", "batch_size", "lr", "patience", "class_weighting")
        train_kw = {k: kw.pop(k) for k in train_keys if k in kw}
        base = dict(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, max_len=max_len)
        configs.append(
            _train_config(
                n,
                [f"{k}={json.dumps(v)}" for k, v in kw.items()],
                **(base | train_kw),
                seed=seed,
                threads=threads,
            )
        )
    if grouped not in ("auto", "yes", "no", "only"):
        raise MalvisionError(f"--grouped {grouped!r}: use auto, yes, no or only")
    has_groups = len(set(ds.groups)) > len(ds.classes)
    runs = [] if grouped == "only" else [False]
    if grouped in ("yes", "only") or (grouped == "auto" and has_groups):
        runs.append(True)
    with progress() as bar:
        for g in runs:
            task = bar.add_task("group-disjoint" if g else "stratified", total=len(configs) * folds)

            def on_fold(name: str, k: int, r: dict[str, Any], task: Any = task) -> None:
                m = r["metrics"]
                bar.console.print(
                    f"{name} fold {k}: acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}", markup=False
                )
                bar.advance(task)

            sub = out_dir / ("group-disjoint" if g else "stratified")
            run_leaderboard(ds, configs, sub, folds=folds, seed=seed, grouped=g, on_fold=on_fold)
            out.print((sub / "leaderboard.md").read_text(), markup=False, soft_wrap=True)
            out.print(f"table, PNG and confusion matrices in {sub}", markup=False)


@app.command()
def gradients(
    models: Annotated[str, typer.Option(help="Comma-separated recurrent models.")] = "rnn,lstm,gru",
    data: DataOpt = Path("."),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("gradients"),
    seq_len: Annotated[int, typer.Option(help="Steps for the gradient-norm curves.")] = 256,
    lengths: Annotated[str, typer.Option(help="Sequence lengths for accuracy-vs-length.")] = "16,64,256,1024",
    epochs: Annotated[int, typer.Option(help="Epochs per training.")] = 4,
    hidden: Annotated[int, typer.Option(help="Hidden units.")] = 64,
    max_train: Annotated[int, typer.Option(help="Training samples used (subsampled, seeded).")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """The vanishing-gradient plot: ||dL/dh_t|| against t for RNN/LSTM/GRU, and accuracy against length."""
    import json

    from malvision.evaluate.gradients import run_gradients

    ds = _dataset_for(data, None, 64, None)
    if ds.spec.kind == "image":
        raise MalvisionError(f"{data}: the gradient experiment needs sequences (an opcode or bytes dataset)")
    lens = [int(x) for x in lengths.split(",") if x.strip()]
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
            seed=seed,
            on_progress=lambda s: bar.update(task, description=s),
        )
    out.print(json.dumps(summary, indent=2), markup=False, soft_wrap=True)
    out.print(f"plot: {out_dir / 'gradients.png'}", markup=False)


@app.command("models")
def models_cmd() -> None:
    """List the registered architectures and the inputs they take."""
    from rich.table import Table

    from malvision.models import list_models, model_info

    table = Table(title="models")
    for col in ("name", "inputs", "description"):
        table.add_column(col)
    for name in list_models():
        info = model_info(name)
        table.add_row(name, ", ".join(info.input_kinds), info.description)
    out.print(table)


@app.command()
def scan(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (recursive), zips, or - for stdin.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Bundled model name, run folder or .pt file.")
    ] = "default",
    threshold: Annotated[
        float | None, typer.Option(help="Malware-probability threshold (default: the model card's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array of records.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV records.")] = False,
    zip_password: Annotated[
        str | None,
        typer.Option(
            help="Open .zip inputs with this password (e.g. infected) and scan their entries in memory."
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Files per inference batch.")] = 32,
    workers: Annotated[int, typer.Option(help="Readers/converters working beside inference.")] = 2,
    processes: Annotated[
        bool,
        typer.Option(
            "--processes/--no-processes",
            help="Read files on disk in worker processes instead of threads (for many cores; on 2 "
            "cores threads are as fast and start at once).",
        ),
    ] = False,
    threads: Annotated[int, typer.Option(help="Inference threads (readers give the parallelism).")] = 1,
    max_size: MaxSize = "8G",
) -> None:
    """Scan files for malware: verdict (malware, benign, unknown), score and reason per file.

    Exit status as ClamAV: 0 nothing found, 1 malware found, 2 errors (listed at the end).
    """
    import csv
    import json

    from malvision.scan import FIELDS, ScanError, Scanner

    if as_json and as_csv:
        raise MalvisionError("pick one of --json and --csv")
    scanner = Scanner(
        model,
        threshold=threshold,
        backend=backend,
        batch_size=batch_size,
        workers=workers,
        processes=processes,
        max_size=parse_size(max_size),
        zip_password=zip_password,
        threads=threads,
    )
    records, failures = [], []
    writer = csv.DictWriter(sys.stdout, fieldnames=list(FIELDS), extrasaction="ignore") if as_csv else None
    if writer:
        writer.writeheader()
    with scanner, progress() as bar:
        task = bar.add_task("scanning", total=None)
        for r in scanner.scan(paths):
            bar.advance(task)
            if isinstance(r, ScanError):
                failures.append((r.path, r.message))
                continue
            records.append(r)
            if writer:
                writer.writerow(r.to_dict())
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=1))
    elif not as_csv:
        from rich.table import Table

        table = Table(
            title=escape(f"malvision scan ({scanner.model_path.name}, threshold {scanner.threshold:.4g})")
        )
        for col in ("path", "verdict", "score", "family", "reason"):
            table.add_column(col, overflow="fold")
        style = {"malware": "bold red", "benign": "green", "unknown": "yellow"}
        for r in records:
            score = "" if r.score is None else f"{r.score:.4f}"
            fam = r.family or ""
            if r.family_score is not None:
                fam += f" ({r.family_score:.2f})"
            table.add_row(
                escape(clean(r.path)),
                f"[{style[r.verdict]}]{r.verdict}[/]",
                score,
                escape(clean(fam)),
                escape(clean(r.reason or "")),
            )
        out.print(table)
        counts = {v: sum(r.verdict == v for r in records) for v in ("malware", "benign", "unknown")}
        out.print(
            f"{len(records)} scanned: {counts['malware']} malware, {counts['benign']} benign, "
            f"{counts['unknown']} unknown; {len(failures)} error(s)",
            markup=False,
        )
    report_failures(failures)
    if failures:
        raise typer.Exit(EXIT_ERROR)
    raise typer.Exit(EXIT_FOUND if any(r.verdict == "malware" for r in records) else EXIT_OK)


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Bundled model name, run folder or .pt file.")] = "default",
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format for now).")] = True,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output .onnx (default: beside the .pt).")
    ] = None,
) -> None:
    """Export a model to ONNX and check its logits match torch (max abs difference < 1e-4)."""
    import json

    from malvision.bundled import resolve_checkpoint
    from malvision.export import export_onnx, sidecar

    if not onnx:
        raise MalvisionError("only --onnx export is supported")
    checkpoint = resolve_checkpoint(model)
    report = export_onnx(checkpoint, out_path)
    # the model's spec and card go to the sidecar file; the terminal gets what the export measured
    shown = {k: v for k, v in report.items() if k != "model"}
    shown["sidecar"] = str(sidecar(out_path or checkpoint.with_suffix(".onnx")))
    out.print(json.dumps(shown, indent=2), markup=False, soft_wrap=True)  # JSON: never wrapped


@app.command()
def info(
    model: Annotated[str, typer.Argument(help="Bundled model name, run folder or .pt file.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
    groups: Annotated[
        bool,
        typer.Option(
            "--groups", help="A detector's out-of-fold results per malware family and benign project."
        ),
    ] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="With --groups: a Markdown table.")] = False,
) -> None:
    """Show a model's card: architecture, input spec, training data, split, metrics, command."""
    import json

    from malvision.bundled import resolve_checkpoint
    from malvision.card import group_rows, model_summary, operating_rows
    from malvision.checkpoint import load_checkpoint

    path = resolve_checkpoint(model)
    summary = model_summary(load_checkpoint(path), path, with_ids=as_json)
    if groups:
        header, rows = group_rows(summary)
        if markdown:
            m = summary.get("metrics", {})
            print(f"# {summary['model']} detector ({path.name}): results per group\n")
            print(
                f"Out-of-fold, {summary.get('split', '')}. At the card's threshold "
                f"{summary.get('threshold', 0):.4g} (target FPR {summary.get('target_fpr')}): "
                f"{m.get('detected')} of {m.get('n_malware')} malware files detected, "
                f"{m.get('false_positives')} of {m.get('n_benign')} benign files flagged. Made by "
                f"`malvision info {model} --groups --markdown`.\n"
            )
            print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
            for r in rows:
                print("| " + " | ".join(r) + " |")
            return
        from rich.table import Table

        table = Table(title=f"{path.name}: out-of-fold results per group")
        for col in header:
            table.add_column(col, justify="left" if col in ("class", "group") else "right")
        for r in rows:
            table.add_row(*(escape(clean(c)) for c in r))
        out.print(table)
        return
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    if "per_group_flagged" in summary:
        summary["per_group_flagged"] = f"{len(summary['per_group_flagged'])} groups (listed by --groups)"
    header, points = operating_rows(summary)
    for k, v in summary.items():
        if k == "metrics" and points:
            v = {m: x for m, x in v.items() if m in ("roc_auc", "n_malware", "n_benign", "tpr_ci95_method")}
        text = json.dumps(v) if isinstance(v, dict | list) else str(v)
        out.print(f"[bold]{escape(clean(str(k)))}[/bold]: {escape(clean(text))}", soft_wrap=True)
    if points:
        from rich.table import Table

        table = Table(title="out-of-fold detection (group-disjoint CV)")
        for col in header:
            table.add_column(col, justify="right")
        for r in points:
            table.add_row(*(escape(clean(c)) for c in r))
        out.print(table)


@app.command("train-detector")
def train_detector(
    data: DataOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: model.pt, card.json, roc.png.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Architecture.")] = "cnn",
    sets: ModelKw = None,
    folds: Annotated[int, typer.Option(help="Group-disjoint cross-validation folds.")] = 5,
    target_fpr: Annotated[
        float, typer.Option(help="False-positive rate the threshold is picked for.")
    ] = 0.001,
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
) -> None:
    """Build a malware/benign detector with a model card: group-disjoint CV, calibration, FPR threshold."""
    import json

    from malvision.detector import build_detector

    cfg = _train_config(
        model,
        sets,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        max_len=max_len,
        seed=seed,
        threads=threads,
        label_smoothing=label_smoothing,
        class_weighting=class_weighting,
    )
    ds = _dataset_for(data, None, 64, None)
    command = "malvision " + " ".join(sys.argv[1:])
    with progress() as bar:
        task = bar.add_task("detector", total=None)
        card = build_detector(
            ds,
            cfg,
            out_dir,
            folds=folds,
            target_fpr=target_fpr,
            command=command,
            on_progress=lambda s: bar.update(task, description=s),
        )
    out.print(json.dumps(card["metrics"], indent=2), markup=False, soft_wrap=True)
    out.print(f"model with card: {out_dir / 'model.pt'}", markup=False)


@app.command()
def explain(
    file: Annotated[Path, typer.Argument(help="The file to explain.")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Bundled model name, run folder or .pt file.",
        ),
    ] = "default",
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for <name>.explain.png and .json.")
    ] = Path("."),
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=50, help="How many byte ranges to report.")] = 5,
    method: Annotated[
        str, typer.Option(help="ig (integrated gradients), gradient, or gradcam (CNNs).")
    ] = "ig",
    steps: Annotated[int, typer.Option(min=1, max=512, help="Integrated-gradients steps.")] = 32,
    target: Annotated[str | None, typer.Option(help="Class to explain (default: the verdict's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON record.")] = False,
    max_size: Annotated[
        str, typer.Option("--max-size", help="Refuse inputs larger than this (read whole into memory).")
    ] = "1G",
) -> None:
    """Explain a verdict: which byte ranges and PE sections (or, for a features model, which PE
    features) drove it; writes a PNG and JSON."""
    import json

    from malvision.explain import explain_bytes, write_explanation
    from malvision.io import check_file
    from malvision.scan import Scanner

    check_file(file, parse_size(max_size))
    try:
        data = file.read_bytes()
    except OSError as e:
        raise MalvisionError(f"{file}: read failed ({e.strerror or e})") from None
    scanner = Scanner(model, backend="torch")
    expl = explain_bytes(scanner, str(file), data, top_k=top_k, method=method, steps=steps, target=target)
    json_path, png_path = write_explanation(expl, data, out_dir)
    if as_json:
        print(json.dumps(expl.to_dict() | {"png": str(png_path), "json": str(json_path)}, indent=1))
        return
    from rich.table import Table

    v = expl.verdict
    score = "" if v.score is None else f" score {v.score:.4f}"
    out.print(
        f"{file}: {v.verdict}{score}"
        + (f" family {v.family}" if v.family else "")
        + (f" ({v.reason})" if v.reason else ""),
        markup=False,
    )
    out.print(
        f"explained: {expl.method} for class {expl.target!r} (model probability "
        f"{expl.target_probability:.4f})",
        markup=False,
    )
    if expl.note:
        out.print(f"note: {expl.note}", markup=False)
    if expl.features:
        table = Table(title=f"top {len(expl.features)} features by share of attribution")
        named = any(f.imports for f in expl.features)  # a column for hashed import buckets, when shown
        for col in ("#", "feature", "value", "typical", "attribution", "share") + (
            ("imports",) if named else ()
        ):
            table.add_column(col, justify="left" if col in ("feature", "imports") else "right")
        for i, f in enumerate(expl.features, 1):
            row = [
                str(i),
                f.name,
                f"{f.value:.4g}",
                f"{f.typical:.4g}",
                f"{f.attribution:+.4f}",
                f"{f.share:.1%}",
            ]
            table.add_row(*row, *((_names(f.imports),) if named else ()))
        out.print(table)
        out.print(f"wrote {png_path} and {json_path}", markup=False)
        return
    table = Table(title=f"top {len(expl.ranges)} {expl.unit} ranges by share of positive attribution")
    for col in ("#", "start", "end", "length", "share", "section", "entropy"):
        table.add_column(col, justify="left" if col == "section" else "right")
    for i, r in enumerate(expl.ranges, 1):
        fmt = hex if r.unit == "byte" else str
        ent = "" if r.section_entropy is None else f"{r.section_entropy:.2f}"
        table.add_row(
            str(i),
            fmt(r.start),
            fmt(r.end),
            f"{r.end - r.start:,}",
            f"{r.share:.1%}",
            escape(" + ".join(r.sections)),
            ent,
        )
    out.print(table)
    out.print(f"wrote {png_path} and {json_path}", markup=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Bundled model name, run folder or .pt file.")
    ] = "default",
    max_upload: Annotated[str, typer.Option(help="Largest upload per request (413 beyond).")] = "64M",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request (504 beyond).")] = 30.0,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Inferences running at once.")] = 2,
    queue: Annotated[int, typer.Option(min=0, help="Requests waiting for a worker (503 beyond).")] = 8,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="MALVISION_API_KEY", help="Require this X-API-Key header (or set MALVISION_API_KEY)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (/v1/scan, /v1/explain, /v1/model, /healthz, /docs) and the web page at /."""
    from malvision.server import ServerSettings
    from malvision.server import serve as run_server

    settings = ServerSettings(
        max_upload=parse_size(max_upload),
        timeout=timeout,
        max_concurrent=max_concurrent,
        queue=queue,
        api_key=api_key,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        err.print(
            f"warning: serving on {host} without --api-key: anyone who can reach it can use it", markup=False
        )
    run_server(model, settings, host=host, port=port)


@app.command()
def bundle(
    run: Annotated[Path, typer.Argument(help="A `train` or `train-detector` run folder.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write, with the model card.")],
) -> None:
    """Package a run's model with its card (split, metrics, training ids, command) for shipping."""
    from malvision.card import bundle_run

    dest = bundle_run(run, out_path)
    out.print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB)", markup=False)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: one line on stderr and a non-zero exit for every expected failure."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if hasattr(sys.stdout, "reconfigure"):  # file names that are not UTF-8 print as \udcXX, never crash
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        # Not standalone, Typer *returns* the code of a ``typer.Exit`` (and 130 for Ctrl-C).
        rc = app(standalone_mode=False)
    except MalvisionError as e:
        err.print(f"error: {clean(str(e))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err.print("error: interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, EOFError):
        sys.exit(1)
    except Exception as e:
        # Usage errors from Typer's bundled click: print its one-line message, exit 2.
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            sys.exit(e.exit_code)
        raise
    if rc == EXIT_INTERRUPTED:
        err.print("error: interrupted", markup=False)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


if __name__ == "__main__":
    main()
