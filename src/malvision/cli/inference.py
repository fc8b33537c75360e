"""Using a model: scan, explain, serve, export and info."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from malvision.cli.app import (
    EXIT_ERROR,
    EXIT_FOUND,
    EXIT_OK,
    app,
    clean,
    err,
    out,
    parse_size,
    progress,
    report_failures,
)
from malvision.cli.options import MaxSize
from malvision.cli.render import (
    brief_line,
    escape,
    feature_list_table,
    feature_table,
    group_table,
    operating_table,
    plain_table,
    range_table,
    scan_table,
)
from malvision.errors import MalvisionError

# The card's metrics `info` prints as they are; the rest are in the operating-point tables
CARD_METRICS = ("roc_auc", "roc_auc_of", "n_malware", "n_benign", "tpr_ci95_method", "threshold_ci95_method")


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
    brief: Annotated[
        bool, typer.Option("--brief", help="One line per file, as clamscan: 'path: verdict score band'.")
    ] = False,
    zip_password: Annotated[
        str | None,
        typer.Option(
            help="Open .zip inputs with this password (e.g. infected) and scan their entries in memory."
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="auto, torch, onnx or numpy (tree models).")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Files per inference batch.")] = 32,
    workers: Annotated[int, typer.Option(help="Readers/converters working beside inference.")] = 2,
    processes: Annotated[
        bool | None,
        typer.Option(
            "--processes/--no-processes",
            help="Read files on disk in worker processes, free of the GIL (default: threads first, "
            "processes once a scan has passed enough files on disk to pay for starting them).",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[int, typer.Option(help="Inference threads (readers give the parallelism).")] = 1,
    max_size: MaxSize = "8G",
) -> None:
    """Scan files for malware: verdict (malware, benign, unknown), score and reason per file.

    Exit status as ClamAV: 0 nothing found, 1 malware found, 2 errors (listed at the end).
    """
    import csv
    import json
    import os

    if "numpy" not in sys.modules:  # OpenBLAS starts a thread per core as numpy loads, which --threads idles
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(1, threads)))  # (about 0.06 s of a cold start)
    from malvision.scan import FIELDS, ScanError, Scanner

    if as_json + as_csv + brief > 1:
        raise MalvisionError("pick one of --json, --csv and --brief")
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
            elif brief:
                print(brief_line(r), flush=True)
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=1))
    elif not (as_csv or brief):
        roots = [p for p in paths if p != "-" and Path(p).is_dir()]
        base = _common_folder([r.path for r in records])
        roots = [base] if base else roots
        where = f", paths under {base}" if base else ""
        point = f", threshold {scanner.threshold:.4g}" if scanner.detector else ""  # a family model has none
        title = f"malvision scan ({scanner.model_path.name}{point}{where})"
        out.print(scan_table(records, title, roots, out.width))
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


def _feature_rows(ck: object) -> list[list[str]]:
    """Every PE feature a features (or fused) model reads: id, analyst name, description and, for
    trees, how many splits use it (most used first)."""
    import numpy as np

    from malvision.convert.featurelabels import feature_label
    from malvision.convert.pefeatures import FEATURE_NAMES

    if ck.spec.get("kind") not in ("features", "fused"):  # type: ignore[attr-defined]
        raise MalvisionError(f"{ck.model_name} reads no PE features; --features is for features models")  # type: ignore[attr-defined]
    trees = next((m for m in ck.model.modules() if hasattr(m, "feature") and hasattr(m, "left")), None)  # type: ignore[attr-defined]
    splits = np.zeros(len(FEATURE_NAMES), dtype=np.int64)
    if trees is not None:
        inner = trees.left.numpy() != np.arange(len(trees.left))
        splits = np.bincount(trees.feature.numpy()[inner], minlength=len(FEATURE_NAMES))[: len(FEATURE_NAMES)]
    order = np.argsort(-splits, kind="stable") if trees is not None else np.arange(len(FEATURE_NAMES))
    return [
        [FEATURE_NAMES[i], *feature_label(FEATURE_NAMES[i]), str(int(splits[i])) if trees is not None else ""]
        for i in order
    ]


def _common_folder(paths: list[str]) -> str | None:
    """The folder every scanned file on disk lies in (None for one file, stdin or zip entries)."""
    import os

    if len(paths) < 2 or not all(os.path.isfile(p) for p in paths):
        return None
    try:
        base = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # absolute and relative paths mixed
        return None
    return base if base not in ("", "/", ".") else None


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
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=50, help="How many byte ranges or features to report.")
    ] = 5,
    method: Annotated[
        str, typer.Option(help="ig (integrated gradients), gradient, or gradcam (CNNs).")
    ] = "ig",
    steps: Annotated[int, typer.Option(min=1, max=512, help="Integrated-gradients steps.")] = 32,
    target: Annotated[
        str | None,
        typer.Option(
            help="Class to explain (default: malware for a detector, the family named for a family model)."
        ),
    ] = None,
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
    scanner = Scanner(model)  # the verdict as scan gives it (its backend); the attribution runs on torch
    expl = explain_bytes(scanner, str(file), data, top_k=top_k, method=method, steps=steps, target=target)
    json_path, png_path = write_explanation(expl, data, out_dir)
    if as_json:
        print(json.dumps(expl.to_dict() | {"png": str(png_path), "json": str(json_path)}, indent=1))
        return
    v = expl.verdict
    score = f" score {v.score_text()}" if v.score is not None else ""
    out.print(
        f"{file}: {v.verdict}"
        + (f" ({v.band})" if v.band else "")
        + score
        + (f" family {v.family}" if v.family else "")
        + (f" ({v.reason})" if v.reason else ""),
        markup=False,
        soft_wrap=True,
    )
    out.print(
        f"explained: {expl.method}, what pushes the log-odds of {expl.target!r} up (+) or down (-); "
        f"raw model probability of {expl.target!r} {expl.raw_probability:.4f} (before calibration)",
        markup=False,
        soft_wrap=True,
    )
    if expl.note:
        out.print(f"note: {expl.note}", markup=False)
    out.print(feature_table(expl) if expl.features else range_table(expl))
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
def export(
    model: Annotated[str, typer.Argument(help="Bundled model name, run folder or .pt file.")] = "default",
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format for now).")] = True,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output .onnx (default: beside the .pt; for a bundled model, NAME.onnx here)."
        ),
    ] = None,
) -> None:
    """Export a model to ONNX and check its logits match torch (max abs difference < 1e-4)."""
    import json

    from malvision.bundled import BUNDLED, resolve_checkpoint
    from malvision.export import export_onnx, sidecar

    if not onnx:
        raise MalvisionError("only --onnx export is supported")
    checkpoint = resolve_checkpoint(model)
    if out_path is None and model in BUNDLED:  # never into the installed package, beside its own export
        out_path = Path(f"{model}.onnx")
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
    features: Annotated[
        bool,
        typer.Option(
            "--features", help="A PE-features model's inputs by the names analysts use, with descriptions."
        ),
    ] = False,
) -> None:
    """Show a model's card: architecture, input spec, training data, split, metrics, bands, command."""
    import json

    from malvision.bundled import resolve_checkpoint
    from malvision.card import (
        collection_rows,
        group_rows,
        model_summary,
        operating_rows,
        protocol_rows,
        type_rows,
    )
    from malvision.checkpoint import load_checkpoint

    if markdown and not groups:
        raise typer.BadParameter("--markdown is a form of --groups; pass both")
    path = resolve_checkpoint(model)
    ck = load_checkpoint(path)
    summary = model_summary(ck, path, with_ids=as_json)
    if features:
        rows = _feature_rows(ck)
        if as_json:
            keys = ("id", "label", "description", "splits")
            print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=1))
        else:
            out.print(feature_list_table(f"{path.name}: input features", rows))
        return
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
        out.print(group_table(header, rows, f"{path.name}: out-of-fold results per group"))
        return
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    if "per_group_flagged" in summary:
        summary["per_group_flagged"] = f"{len(summary['per_group_flagged'])} groups (listed by --groups)"
    header, points = operating_rows(summary)
    for k, v in summary.items():
        if k == "protocols":
            continue  # tables below
        if k == "metrics" and points:
            v = {m: x for m, x in v.items() if m in CARD_METRICS}
        text = json.dumps(v) if isinstance(v, dict | list) else str(v)
        out.print(f"[bold]{escape(clean(str(k)))}[/bold]: {escape(clean(text))}", soft_wrap=True)
    if points:
        out.print(operating_table(header, points))
    for title, (head, rows) in (
        ("out-of-fold detection under each protocol", protocol_rows(summary)),
        ("per malware collection (the card's protocol)", collection_rows(summary)),
        ("the card's threshold per file type", type_rows(summary)),
    ):
        if rows:
            out.print(plain_table(title, head, rows))
