"""``python -m unenroll.cli``: the command line."""

from unenroll.cli.app import main

main()
