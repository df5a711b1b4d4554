"""``python -m walship.cli``: the ``walship`` command without its script."""

from walship.cli import main

main()
