"""``python -m malvision`` and the ``malvision`` command.

``main`` imports the command line only when called: a scan's worker processes import the script that
started their parent, and Typer is no use to them.
"""


def main() -> None:
    """Run the ``malvision`` command."""
    from malvision.cli import main as run

    run()


if __name__ == "__main__":
    main()
