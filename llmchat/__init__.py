"""llmchat: a terminal chat for local open-weights models that shows what the model really does."""

__version__ = "0.1.0"
