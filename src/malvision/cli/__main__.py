"""``python -m malvision.cli``: the ``malvision`` command (what ``torchrun`` runs for data-parallel training)."""

from malvision.cli import main

main()
