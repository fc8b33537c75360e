"""The ``malvision`` command: parses, calls the library, prints. Errors become one line and an exit code."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
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
    if value <= 0:
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
    )


def report_failures(failures: list[tuple[str, str]]) -> None:
    """Print each failed input on one line at the end of a batch run."""
    if failures:
        err.print(f"[red]{len(failures)} input(s) failed:[/red]")
        for name, msg in failures:
            err.print(f"error: {msg}" if msg.startswith(name) else f"error: {name}: {msg}", markup=False)


MaxSize = Annotated[str, typer.Option("--max-size", help="Refuse inputs larger than this (e.g. 8G, 500M).")]


@app.command()
def convert(
    inputs: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
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
) -> None:
    """Convert binaries to Nataraj byte-plot PNGs (mirroring the input tree) or a dataset cache."""
    from malvision.convert.image import iter_plot_rows, plot_shape, write_png
    from malvision.io import atomic_writer, expand_inputs, open_source

    limit = parse_size(max_size)
    if fmt == "dataset":
        from malvision.data.cache import build_cache_from_paths

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
        out.print(f"wrote {n} samples to {out_dir}")
        report_failures(failures)
        raise typer.Exit(EXIT_ERROR if failures else 0)
    if fmt != "png":
        raise MalvisionError(f"unknown --format {fmt!r}; use png or dataset")
    items = list(expand_inputs(inputs))
    failures: list[tuple[str, str]] = []
    written = 0
    with progress() as bar:
        task = bar.add_task("converting", total=len(items))
        for path, rel in items:
            try:
                src = open_source(path, limit)
                height, width = plot_shape(src.size)
                dest = out_dir / rel.parent / f"{rel.name}.png"
                with atomic_writer(dest) as f:
                    write_png(f, iter_plot_rows(src.chunks(), src.size), height, width)
                written += 1
            except MalvisionError as e:
                failures.append((str(path), str(e)))
            bar.advance(task)
    out.print(f"wrote {written} PNG(s) to {out_dir}")
    report_failures(failures)
    if failures:
        raise typer.Exit(EXIT_ERROR)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: one line on stderr and a non-zero exit for every expected failure."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app(standalone_mode=False)
    except MalvisionError as e:
        err.print(f"error: {e}", markup=False, highlight=False)
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


if __name__ == "__main__":
    main()
