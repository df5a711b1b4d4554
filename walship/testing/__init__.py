"""Helpers for testing code that uses walship (fault injection). Not imported by ``walship``."""
