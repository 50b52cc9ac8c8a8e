"""``python -m lensflow`` runs the command line."""

from lensflow.cli import main

main()
