"""The interactive chat: session state, commands, saved conversations."""
