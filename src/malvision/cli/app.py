"""The Typer app, its shared options and helpers, and ``main``: every expected failure becomes one line
on stderr and an exit code."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from malvision.errors import MalvisionError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

SETTINGS = {
    "name": "malvision",
    "help": "Detect and classify malware from a file's bytes seen as an image and as a sequence.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
}
app = typer.Typer(**SETTINGS)  # type: ignore[arg-type]


def _print_version(value: bool) -> None:
    if value:
        from malvision import __version__

        out.print(f"malvision {__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Detect and classify malware from a file's bytes seen as an image and as a sequence."""


data_app = typer.Typer(help="Inspect and build datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Exit codes, as ClamAV: 0 all well, 1 malware found (scan only), 2 errors (the run goes on and
# lists them at the end), 130 interrupted.
EXIT_OK, EXIT_FOUND, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class _LazyConsole:
    """A rich ``Console`` made on first use: importing rich is a tenth of a cold ``scan --json``,
    which prints nothing through it."""

    def __init__(self, **options: Any) -> None:
        self._options: dict[str, Any] = options
        self._console: Console | None = None

    def real(self) -> Console:
        """The console itself, for rich code that needs one (a ``Progress``: dunder methods bypass
        ``__getattr__``)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


_out, _err = _LazyConsole(), _LazyConsole(stderr=True)
out, err = cast("Console", _out), cast("Console", _err)


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


class _Hidden:
    """The part of rich's ``Progress`` the commands use, showing nothing: the bar on a stderr that is
    not a terminal, without importing rich for it."""

    console = err

    def __enter__(self) -> _Hidden:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, **fields: Any) -> int:
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        return None

    def update(self, task: int, **fields: Any) -> None:
        return None


def progress() -> Progress:
    """The progress bar used by every long command (on stderr, hidden when not a terminal)."""
    if not (sys.stderr.isatty() or os.environ.get("FORCE_TERMINAL") or os.environ.get("TTY_COMPATIBLE")):
        return cast("Progress", _Hidden())  # rich would say the same (and these two can overrule it)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_err.real(),
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


def invoked_argv(ctx: typer.Context) -> list[str]:
    """The running command as the arguments that give it again: its name, then every option whose
    value is not the default (long names, ``--no-x`` for a false flag), whatever argv it came from."""
    argv = [str(ctx.info_name)]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name != "option" or value is None or value == param.default:
            continue
        name = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            secondary = getattr(param, "secondary_opts", [])
            if value or secondary:
                argv.append(name if value else max(secondary, key=len))
            continue
        for v in value if getattr(param, "multiple", False) else [value]:
            argv += [name, str(v)]
    return argv


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _app_for(argv: list[str]) -> typer.Typer:
    """``app`` with only the command ``argv`` names, when it names one: Typer builds the options of every
    command it holds at each start, about 0.1 s of a cold ``scan``; one is enough to run it."""
    from typer.main import get_command_name

    name = argv[0] if argv else ""
    hits = [c for c in app.registered_commands if (c.name or get_command_name(c.callback.__name__)) == name]
    if len(hits) != 1:
        return app
    one = typer.Typer(**SETTINGS)  # type: ignore[arg-type]
    one.registered_callback, one.registered_commands = app.registered_callback, hits
    return one


def world_size() -> int:
    """How many processes torchrun started for this command (1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE") or 1))
    except ValueError:
        return 1


def _rank() -> str:
    """This process's rank under torchrun ("0" without it)."""
    return os.environ.get("RANK") or "0"


def _error_prefix() -> str | None:
    """What an error line of this process begins with, or None to leave it to rank 0: under torchrun,
    a refusal before training (every process checks the same settings) is said once, by rank 0; an error
    once the processes train together (a loss that diverged on one shard) by the process it struck."""
    rank = _rank()
    if world_size() == 1:
        return ""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return f"rank {rank}: "
    return "" if rank == "0" else None


def main() -> None:
    """Entry point: one line on stderr and a non-zero exit for every expected failure."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if hasattr(sys.stdout, "reconfigure"):  # file names that are not UTF-8 print as \udcXX, never crash
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        # Not standalone, Typer *returns* the code of a ``typer.Exit`` (and 130 for Ctrl-C).
        rc = _app_for(sys.argv[1:])(standalone_mode=False)
    except MalvisionError as e:
        if (prefix := _error_prefix()) is not None:
            err.print(f"error: {prefix}{clean(str(e))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_ERROR)
    except OSError as e:  # a path the command could not create, read or write: the system's reason
        where = f"{os.fsdecode(e.filename)}: " if e.filename else ""
        err.print(
            f"error: {clean(where + (e.strerror or str(e)).lower())}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_ERROR)
    except ModuleNotFoundError as e:
        if e.name != "malvision._bytepass":
            raise
        err.print(  # a source tree used without installing it: the C module was never compiled
            "error: malvision's C module (malvision._bytepass) is not built: install malvision with pip, "
            "which compiles it (`pip install -e .` in a checkout; a C compiler is needed)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        if _rank() == "0":  # Ctrl-C reaches every process: said once
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
