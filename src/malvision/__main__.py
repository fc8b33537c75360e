"""``python -m malvision`` and the ``malvision`` command.

``main`` imports the command line only when called: a scan's worker processes import the script that
started their parent, and Typer is no use to them.
"""


def _quit_now(signum: int, frame: object) -> None:
    """Ctrl-C once the command is done: leave at once, quietly (Python's own handler would print a
    traceback from the interpreter's shutdown, or wait on threads still winding down)."""
    import contextlib
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(130)


def main() -> None:
    """Run the ``malvision`` command."""
    import signal

    from malvision.cli import main as run

    try:
        run()
    finally:  # the work is done and said
        signal.signal(signal.SIGINT, _quit_now)


if __name__ == "__main__":
    main()
