"""Remote inference engines as a ModelSource: llama.cpp's llama-server, vLLM, SGLang and plain
OpenAI-compatible servers, over HTTP (`http`), one adapter per engine (`engines`), the server as
tokenizer (`tokenizer`) and `source.RemoteEngine`. A face like chat/ and serve/: the CLI builds a
RemoteEngine from a models.toml `url` entry (or `-m URL`) and hands it to the same session,
renderers and JSON as a local model.
"""
