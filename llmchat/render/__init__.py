"""Terminal rendering: every rich import of llmchat lives here and in chat/repl.py (prompt_toolkit)."""
