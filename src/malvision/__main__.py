"""``python -m malvision``: the same as the ``malvision`` command."""

from malvision.cli import main

main()
