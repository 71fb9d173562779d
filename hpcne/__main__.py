"""``python -m hpcne``: the same as the ``hpcne`` command."""

from hpcne.cli import main

main()
