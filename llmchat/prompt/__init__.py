"""Messages or text → prompt token ids: the chat template applied through the model's tokenizer,
the raw completion path, fitting into the context window (`build`), and the think markers that
split an answer into reasoning and answer (`thinking`)."""
