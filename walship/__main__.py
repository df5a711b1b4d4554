"""``python -m walship``: the ``walship`` command without its script."""

from walship.cli import main

main()
