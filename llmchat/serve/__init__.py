"""A warm-start server: `llmchat serve` loads a model once; `llmchat ask` answers through it.

Modules: `paths` (where the socket lives, who may use it, is a server alive), `protocol` (the
wire format, no torch), `server` (the accept loop around an `engine.source.LocalModel`), `client`
(`RemoteModel`, a ModelSource over the socket; stale-socket cleanup; starting a detached server
for --keep-alive), and the HTTP face: `http` (the starlette app and `serve_http`), `openai_api`
(OpenAI's request and record shapes), `engine_queue` (requests in order onto one worker thread).

Wire format (version 2) — newline-delimited JSON (ASCII only) over a Unix socket. Every request
carries "version": 2 and an "op". Tokens, stats and the family are in the engine's one dict form
(`engine.codec`, as in `ask --json`); sampling settings are `SamplingParams.to_dict()`.

One-shot (answered, then the server hangs up):
  {"op": "ask", "prompt", "system", "raw", "truncate", "logprobs": K, "params": {settings}}
      → {"prompt": {"ids", "templated", "starts_thinking", "dropped_tokens"}, "model": {model}}
        {"token": {token}} …  {"finished": {stats}}
  {"op": "ping"} → {"pong": {"model", "pid", "location", "requests"}}
  {"op": "stop"} → {"stopping": true}

A ModelSource session: {"op": "hello"} → {"model": {"alias", "weights", "backend",
"context_length", "family"}}, then any number of calls on the same connection until the client
hangs up (or stays silent for 30 s):
  {"op": "render", "messages", "add_generation_prompt"}        → {"ids": [...]}
  {"op": "prepare", "prompt", "system", "raw", "truncate", "max_tokens"} → {"prompt": {...}}
  {"op": "generate", "ids", "params", "logprobs", "stop"}      → {"token": …} … {"finished": …}
  {"op": "next", "ids", "k"}                                   → {"distribution": {...}}
  {"op": "score", "ids", "start", "logprobs", "window"}        → {"score": {"context_tokens", "windows", "tokens"}}

Any request may instead get {"error": {"type", "message", "hint", "exit_code"}}; a client that
hangs up mid-answer stops the generation after the current token.
"""
