"""ModelSpec → a model on a device: the only package that touches weight files and devices.

`load.load` is the entry point (LoadedModel); `files` finds and checks a model's files; `gguf/`
checks, converts and fixes GGUF files; `cpu/` is llmchat's own forward pass for Llama-shaped
models with its quantized linears and packed-weight cache; `memory` refuses what cannot fit;
`describe` is `models show`. Long steps report through a `progress.Progress`; nothing here prints.
"""
