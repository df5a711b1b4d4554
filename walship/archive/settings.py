"""The limits of the archive settings, shared by the YAML config and the archiver so that a
value one accepts the other never refuses."""

MAX_ATTEMPTS = 1000
"""Upload attempts per segment before it is left pending (until a flush or the next open)."""
MAX_BACKOFF = 3600.0
"""The longest first backoff, seconds."""
MAX_BACKOFF_CAP = 86400.0
"""The longest backoff cap, seconds."""
CONDITIONAL_CREATE = ("required", "checked")
"""``archive.conditional_create``: ``required`` archives only to a server that honours
``If-None-Match: *`` on PUT; ``checked`` falls back to a check before and after each create."""
MAX_WORKERS = 256
MAX_LAG_WARNING = 1_000_000_000
