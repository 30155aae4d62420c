"""`python -m llmchat.serve ARGS` is `llmchat ARGS`: how `ask --keep-alive` starts a detached
server with the interpreter it runs on, without depending on where the `llmchat` script lives."""

from llmchat.cli import main

main()
