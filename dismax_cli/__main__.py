"""``python -m dismax_cli`` runs the ``dismax`` command."""

from dismax_cli.cli.app import main

main()
