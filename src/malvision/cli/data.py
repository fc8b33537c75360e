"""Data commands: ``convert`` (byte-plot PNGs or a cache), ``data info`` and ``data build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from malvision.cli.app import (
    EXIT_ERROR,
    app,
    clean,
    data_app,
    err,
    out,
    parse_size,
    progress,
    report_failures,
)
from malvision.cli.options import MaxSize
from malvision.cli.render import escape, plain_table
from malvision.errors import MalvisionError


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
    overwrite: Annotated[
        bool, typer.Option(help="dataset only: replace an existing cache at --out.")
    ] = False,
) -> None:
    """Convert binaries to Nataraj byte-plot PNGs (mirroring the input tree) or a dataset cache."""
    from malvision.convert.image import iter_plot_rows, plot_shape, write_png
    from malvision.data.readers import max_plot_pixels
    from malvision.io import atomic_writer, make_dirs
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
            overwrite=overwrite,
        )
        out.print(f"wrote {n} samples to {out_dir}", markup=False)
        report_failures(failures)
        raise typer.Exit(EXIT_ERROR if failures else 0)
    if fmt != "png":
        raise MalvisionError(f"unknown --format {fmt!r}; use png or dataset")
    items = list(iter_sources(inputs, zip_password=zip_password, max_size=limit))
    make_dirs(out_dir)  # a folder that cannot be made fails once, not once a file
    failures: list[tuple[str, str]] = []
    too_large: list[str] = []  # written, but past what a Pillow-based reader (ours too) reads back
    written = 0
    claimed: dict[Path, str] = {}  # destination -> input, so two inputs never share one PNG
    with progress() as bar:
        task = bar.add_task("converting", total=len(items))
        for name, rel, opener in items:
            try:
                src = opener()
                height, width = plot_shape(src.size)
                if (limit_px := max_plot_pixels()) is not None and height * width > limit_px:
                    too_large.append(f"{name} ({width} x {height:,})")
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
    if too_large:
        err.print(
            f"note: {len(too_large)} byte plot(s) over {max_plot_pixels() or 0:,} pixels (files over about 170 MiB), "
            f"which Pillow, and so malvision's Malimg reader, refuses as a decompression bomb: "
            f"{', '.join(too_large[:3])}{' ...' if len(too_large) > 3 else ''}",
            markup=False,
            soft_wrap=True,
        )
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
        identity = getattr(ds, "data_hash", None)  # a cache's: the same files and labels anywhere
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
    if s.collections:
        rows = [[c, str(n), str(g)] for c, n, g in s.collections]
        out.print(plain_table("collections (source-disjoint folds)", ["collection", "files", "groups"], rows))
    if s.pe_types:
        types = sorted({t for v in s.pe_types.values() for t in v})
        rows = [[t, *(str(s.pe_types[c].get(t, 0)) for c in s.pe_types)] for t in types]
        out.print(plain_table("files per PE type", ["PE type", *s.pe_types], rows))
    if identity:
        out.print(
            f"data hash (sha256 of sorted file hashes and labels): {identity}", markup=False, soft_wrap=True
        )
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
        str,
        typer.Option(help="image, views, bytes, features, fused or histograms (PE set); opcodes (BIG2015)."),
    ] = "image",
    image_size: Annotated[int, typer.Option(help="Side of the square image.")] = 64,
    tile: Annotated[
        int,
        typer.Option(
            help="image and views: make the picture of tiles this many bytes a side, the plot at its own "
            "resolution (0: the area-averaged plot)."
        ),
    ] = 0,
    max_len: Annotated[int | None, typer.Option(help="Bytes/opcodes kept per sample (default 2 Mi).")] = None,
    kind_version: Annotated[
        int | None,
        typer.Option(
            help="An older conversion of --kind that models still read (features 3 or 4); default: today's."
        ),
    ] = None,
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
    malware: Annotated[
        list[Path] | None,
        typer.Option(
            help="Malware corpus (<group>/<sha256> + manifest.csv, from build_malware_corpus.py); repeatable."
        ),
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
    max_per_group: Annotated[
        int | None,
        typer.Option(help="Keep at most this many files of one benign project (earlier --benign first)."),
    ] = None,
    max_size: MaxSize = "8G",
) -> None:
    """Build a training cache: PE malware vs benign (label malware/benign) or BIG2015 opcodes (family)."""
    import time

    from malvision.data.build import (
        build_detection_cache,
        build_opcode_cache,
        default_benign_dir,
        default_malware_zip,
        default_opcodes_dir,
    )
    from malvision.data.cache import CachedDataset

    start = time.monotonic()
    dedupe = not keep_duplicates
    if opcodes is not None or kind == "opcodes":
        opcodes = opcodes or default_opcodes_dir()
        command = ["data", "build", "--opcodes", _abs(opcodes)] + (
            ["--max-len", str(max_len)] if max_len else []
        )
        n, failures = build_opcode_cache(
            out_dir,
            opcodes,
            max_len,
            progress=progress(),
            overwrite=overwrite,
            dedupe=dedupe,
            command=[*command, *_flags(keep_duplicates, max_size), "--out", _abs(out_dir)],
        )
    else:
        benign = benign or [default_benign_dir()]
        malware_zip = malware_zip or default_malware_zip()
        command = ["data", "build", "--kind", kind, "--image-size", str(image_size)]
        command += ["--max-len", str(max_len)] if max_len else []
        command += ["--kind-version", str(kind_version)] if kind_version is not None else []
        command += ["--tile", str(tile)] if tile else []
        for d in benign:
            command += ["--benign", _abs(d)]
        command += ["--malware-zip", _abs(malware_zip)]
        for d in malware or ():
            command += ["--malware", _abs(d)]
        command += ["--max-per-group", str(max_per_group)] if max_per_group is not None else []
        command += ["--all-kinds"] * all_kinds + (["--password", password] if password != "infected" else [])
        n, failures = build_detection_cache(
            out_dir,
            kind=kind,
            image_size=image_size,
            max_len=max_len,
            kind_version=kind_version,
            tile=tile,
            benign_dir=benign or None,
            malware_zip=malware_zip,
            all_kinds=all_kinds,
            password=password,
            max_size=parse_size(max_size),
            progress=progress(),
            overwrite=overwrite,
            dedupe=dedupe,
            malware_dirs=malware or (),
            max_per_group=max_per_group,
            command=[*command, *_flags(keep_duplicates, max_size), "--out", _abs(out_dir)],
        )
    out.print(f"wrote {n} samples to {out_dir} in {time.monotonic() - start:.1f} s", markup=False)
    cache = CachedDataset(out_dir)
    meta = cache.meta
    unknown = [r.unknown for r in cache.records]
    if any(unknown) and cache.classes == ["benign", "malware"]:  # what detector figures count apart
        from malvision.evaluate.detection import unscored

        u = unscored([int(r.label == "malware") for r in cache.records], unknown)
        out.print(
            f"{u['malware'] + u['benign']} of them are files a scan calls unknown ("
            + ", ".join(f"{k} {v}" for k, v in u["reasons"].items())
            + "): kept, and counted by detector figures as never flagged",
            markup=False,
            soft_wrap=True,
        )
    if not_samples := meta.get("not_samples"):
        out.print(
            f"left out {len(not_samples)} file(s) that are not samples (listed in meta.json), e.g. "
            f"{not_samples[0][1]}",
            markup=False,
            soft_wrap=True,
        )
    dups = meta.get("duplicates", [])
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


def _abs(path: Path) -> str:
    return str(path.expanduser().absolute())


def _flags(keep_duplicates: bool, max_size: str) -> list[str]:
    """The ``data build`` flags that change which files a cache keeps, as given."""
    return ["--keep-duplicates"] * keep_duplicates + (["--max-size", max_size] if max_size != "8G" else [])
