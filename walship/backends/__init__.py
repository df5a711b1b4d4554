"""Stores, where the active log lives: posix, memory, and the registry of entry-point stores.

Each imports only :mod:`walship.store` and :mod:`walship.errors`; the archive (where closed
segments go) is :mod:`walship.archive`.
"""
