"""Plugins: the hook specifications, their delivery, and the built-in plugins."""
