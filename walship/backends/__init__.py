"""Stores (where the active log lives) and archives (where closed segments go)."""
