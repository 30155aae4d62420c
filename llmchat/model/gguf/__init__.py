"""GGUF files: the pre-flight header check (`check`), the one-time conversion into a Hugging Face
folder (`convert`), and llama.cpp's pre-tokenizer steps that transformers' converter lacks
(`pretokenizer`)."""
