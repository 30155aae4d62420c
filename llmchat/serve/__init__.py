"""A warm-start server: `llmchat serve` loads a model once; `llmchat ask` answers through it.

Modules: `paths` (where the socket lives, who may use it, is a server alive), `protocol` (the
wire format, no torch), `server` (the accept loop, loads the model), `client` (the `ask` side:
RemoteModel, stale-socket cleanup, starting a detached server for --keep-alive).

Wire format — newline-delimited JSON (ASCII only) over a Unix socket, one request per connection:

  client → {"version": 1, "op": "ask", "prompt": str, "system": str|null, "raw": bool,
            "truncate": bool, "logprobs": K, "params": {SamplingParams fields}}
           {"version": 1, "op": "ping"}   {"version": 1, "op": "stop"}
  server → {"prompt": {"ids", "templated", "starts_thinking", "dropped_tokens"},
            "model": {"alias", "quant", "backend", "family": {Family fields}}}   (ask, first line)
           {"token": {TokenEvent fields; "bytes" base64}}                        (one per token)
           {"finished": {Finished fields}}                                       (ask, last line)
           {"error": {"type", "message", "hint", "exit_code"}}                   (instead, at any point)
           {"pong": {"model", "pid", "location", "requests"}}  {"stopping": true}
"""
