"""Terminal rendering. All rich imports live here (and in repl.py)."""
