"""The engine: frame codec, segment header and manager, rotation, recovery."""
