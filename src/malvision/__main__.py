"""``python -m malvision`` and the ``malvision`` command.

``main`` imports the command line only when called: a scan's worker processes import the script that
started their parent, and Typer is no use to them.
"""


def main() -> None:
    """Run the ``malvision`` command."""
    import signal

    from malvision.cli import main as run

    try:
        run()
    finally:  # the work is done and said: a Ctrl-C now would only turn the exit into a traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    main()
