"""walship's benchmark suite.

Every case runs walship and a baseline side by side in the same process, alternating for several
rounds, and reports the medians and their ratio against the issue's target. Run it with
``python -m benchmarks [--quick] [--json] [--only CASE...]`` or ``walship bench``; see
docs/PERFORMANCE.md for the results and what they mean.
"""

from benchmarks.cli import main

__all__ = ["main"]
