"""The chat REPL: prompt_toolkit input, slash-command table, Ctrl-C / Ctrl-D semantics.

Keys: Enter sends; Esc-Enter or Alt-Enter inserts a newline; a line starting with \"\"\" opens a
block that the next \"\"\" closes; a pasted block stays one message. Ctrl-C while generating stops
the answer (kept, marked interrupted); at the prompt it clears the line. Ctrl-D or /exit leaves.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Callable

from ..engine.events import Finished
from ..errors import LlmchatError, UsageError
from ..paths import state_dir
from ..render import chat_view
from ..render.stats import stats_line
from ..render.styles import VIEWS, write_legend
from ..sanitize import sanitize
from ..signals import StopFlag, sigint_sets
from . import store
from .commands import COMMANDS, Command, help_rows, parse
from .session import Session, set_example
from .terminal import history as _history, no_echo as _no_echo


class Repl:
    def __init__(self, session: Session, console, *, registry, load_model: Callable, history: Path | None,
                 input=None, output=None, autosave: Path | None = None):
        self.session, self.console, self.registry = session, console, registry
        self.load_model = load_model
        self.autosave = autosave
        self.running = True
        self.prompt = self._make_prompt(history, input, output)
        self.handlers: dict[str, Callable[[str], None]] = {name: getattr(self, f"cmd_{name}") for name in COMMANDS}

    # ------------------------------------------------------------------ input
    def _make_prompt(self, history: Path | None, input, output):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.history import InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        bindings = KeyBindings()

        def in_block(buffer) -> bool:
            text = buffer.text
            return text.lstrip().startswith('"""') and not (len(text.strip()) > 3 and text.rstrip().endswith('"""'))

        @bindings.add("enter", filter=Condition(lambda: True))
        def _(event):
            buffer = event.current_buffer
            if in_block(buffer):
                buffer.insert_text("\n")
            else:
                buffer.validate_and_handle()

        @bindings.add("escape", "enter")
        def _(event):
            event.current_buffer.insert_text("\n")

        words = [f"/{name}" for name in COMMANDS]
        completer = WordCompleter(words, sentence=True, pattern=None)
        return PromptSession(
            message=[("class:prompt", "» ")], multiline=True, key_bindings=bindings,
            history=_history(history) if history else InMemoryHistory(), completer=completer,
            complete_while_typing=Condition(lambda: self.prompt.default_buffer.text.startswith("/")),
            bottom_toolbar=self._toolbar, input=input, output=output, enable_history_search=False,
            prompt_continuation=lambda width, line, wrap: "… ".rjust(width),
        )

    def _toolbar(self):
        s = self.session
        try:
            used = s.context_used()
        except LlmchatError:
            used = 0
        return (f" {sanitize(s.source.spec.alias)} · context {used}/{s.source.context_length} · "
                f"temperature {s.params.temperature:g} · view {s.view} · /help ")

    def read(self) -> str | None:
        """One input; None on Ctrl-D. Ctrl-C clears the line (at an empty prompt: says how to leave)."""
        while True:
            try:
                text = self.prompt.prompt()
            except KeyboardInterrupt:
                if not self.prompt.default_buffer.text:
                    self._dim("(Ctrl-D or /exit to leave)")
                continue
            except EOFError:
                return None
            text = text.strip("\n")
            if text.lstrip().startswith('"""'):
                text = text.strip()[3:]
                text = text[:-3] if text.endswith('"""') else text
                text = text.strip("\n")
            return text

    # ------------------------------------------------------------------ loop
    def run(self) -> int:
        self._dim(f"{self.session.source.spec.alias} · /help for commands · Ctrl-D to leave")
        self.session.fit_settings()
        self._notices()
        while self.running:
            line = self.read()
            if line is None:
                break
            if not line.strip():
                continue
            self.handle(line)
        self._autosave()
        return 0

    def handle(self, line: str) -> None:
        item = parse(line)
        try:
            if isinstance(item, Command):
                handler = self.handlers.get(item.name)
                if handler is None:
                    self._error(f"unknown command /{sanitize(item.name)}")
                    self.cmd_help("")
                else:
                    with _no_echo():  # keys typed while a command runs reach the next prompt, once
                        handler(item.args)
            else:
                self.stream(lambda: self.session.ask(item))
        except LlmchatError as exc:
            self._error(exc.one_line())
        self._notices()

    def stream(self, start: Callable) -> None:
        """Run one generation with Ctrl-C stopping it (the partial answer stays)."""
        s = self.session
        iterator = start()
        self._notices()
        exchange = s.exchanges[-1]
        view = chat_view.AnswerView(self.console, s.view, think=s.think)
        for event, (pieces, channel) in zip(exchange.events, exchange.splits):  # /branch: kept and forced tokens
            view.event(event, pieces, channel)
        finished = None
        stop = StopFlag()
        s.should_stop = stop
        from ..render.progress import PrefillLine

        reading = s.on_prefill = PrefillLine(self.console.file)
        try:
            with _no_echo(), sigint_sets(stop):
                for item in iterator:
                    reading.clear()
                    if isinstance(item, Finished):
                        finished = item
                    else:
                        view.event(item, *exchange.splits[-1])
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the token loop
            iterator.close()
        finally:
            reading.clear()
            s.should_stop = s.on_prefill = None
            view.close(exchange.tail)
        if exchange.interrupted or (finished and finished.reason == "interrupted"):
            self._dim("(interrupted — the partial answer is kept)")
        if s.view == "probs":
            write_legend(self.console)
        finished = finished or exchange.finished
        self._dim(stats_line(finished, context=(s.context_used(), s.source.context_length),
                             interrupted=exchange.interrupted) if finished else "interrupted")

    # ------------------------------------------------------------------ commands
    def cmd_help(self, args: str) -> None:
        from rich.table import Table

        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for usage, text in help_rows():
            table.add_row(usage, text)
        self.console.print(table)
        self._dim('Enter sends · Esc-Enter newline · """ opens/closes a block · //text sends "/text"')

    def cmd_exit(self, args: str) -> None:
        self.running = False

    def cmd_clear(self, args: str) -> None:
        self.session.clear()
        self._dim("new conversation")

    def cmd_undo(self, args: str) -> None:
        removed = self.session.undo()
        self._dim(f"removed: {sanitize(removed.user[:60])}")

    def cmd_retry(self, args: str) -> None:
        self.stream(self.session.retry)

    def cmd_system(self, args: str) -> None:
        if not args:
            current = self.session.system
            self._dim(f"system prompt: {sanitize(current)}" if current else "no system prompt (set one with /system TEXT)")
            return
        if args == "--clear":
            self.session.system = None
            self._dim("system prompt removed")
            return
        self.session.system = args
        self._dim("system prompt set")

    def cmd_set(self, args: str) -> None:
        if not args:
            for key, value in self.session.settings().items():
                self.console.print(f"{key} = {value}")
            return
        key, _, value = args.partition(" ")
        if not value.strip():
            raise UsageError(f"/set {key} needs a value", f"e.g. /set {key} {set_example(key)}")
        self._dim(self.session.set(key, value.strip()))

    def cmd_model(self, args: str) -> None:
        if not args:
            raise UsageError("/model needs an alias", "see `llmchat models`")
        spec, previous = self.registry.get(args), self.session.source.spec
        self.session.source.forget()
        self.session.source = None  # free the old model (and its cache) before loading the new one
        gc.collect()
        _empty_device_cache()
        try:
            self.session.source = self.load_model(spec)
        except BaseException:
            self.session.source = self.load_model(previous)  # keep the chat usable
            raise
        source = self.session.source
        self.session.fit_settings()
        self._dim(f"model: {spec.alias} · {source.context_length:,} tokens of context · {describe_weights(source)}")
        self._notices()

    def cmd_view(self, args: str) -> None:
        if not args:
            self._dim(f"view: {self.session.view} (choose with /view text, /view tokens or /view probs)")
            return
        if args not in VIEWS:
            raise UsageError(f"/view {args}: there is no such view; choose text, tokens or probs", "e.g. /view probs")
        self.session.view = args
        self._dim(f"view: {args}")
        if args == "probs":
            write_legend(self.console)

    def cmd_think(self, args: str) -> None:
        if args not in ("show", "hide"):
            raise UsageError("/think show or /think hide", "")
        self.session.think = args
        self._dim(f"thinking: {args}")

    def cmd_save(self, args: str) -> None:
        path = Path(args).expanduser() if args else state_dir() / "conversations" / f"{_stamp()}.json"
        try:
            saved = store.save(self.session, path)
        except OSError as exc:
            raise UsageError(f"could not save to {path}: {exc.strerror or exc}",
                             "the conversation is still here; /save to another path") from None
        self._dim(f"saved {saved}")

    def cmd_load(self, args: str) -> None:
        if not args:
            raise UsageError("/load needs a path", "e.g. /load chat.json")
        store.restore(self.session, store.load(Path(args)))
        self._dim(f"loaded {len(self.session.exchanges)} exchanges")

    def cmd_tokens(self, args: str) -> None:
        s = self.session
        messages = s.messages()
        if not messages:
            raise UsageError("the conversation is empty", "send a message first")
        ids = s.source.render(messages, add_generation_prompt=True)  # as the next turn would start
        chat_view.conversation_tokens(self.console, s.source.tokenizer, ids, s.source.context_length)

    def cmd_inspect(self, args: str) -> None:
        events = self.session.exchanges[-1].events if self.session.exchanges else []
        if not events:
            raise UsageError("no answer to inspect yet", "send a message first")
        if args:
            if not args.isdigit() or int(args) >= len(events):
                raise UsageError(f"/inspect {args}: give a token index below {len(events)}", "e.g. /inspect 3")
            chat_view.inspect_one(self.console, events[int(args)])
        else:
            chat_view.inspect_table(self.console, events)

    def cmd_branch(self, args: str) -> None:
        index, _, alternative = args.partition(" ")
        if not index.isdigit() or not alternative.strip():
            raise UsageError("/branch N ALT: N is a token index, ALT an alternative's index or \"text\"",
                             "e.g. /branch 4 1 — see /inspect")
        self.stream(lambda: self.session.branch(int(index), alternative.strip()))

    def cmd_score(self, args: str) -> None:
        from ..render import score_view

        try:
            result = self.session.score(args)
        except KeyboardInterrupt:
            self._dim("(interrupted)")
            return
        score_view.heatmap(self.console, result, "prob" if self.session.view == "probs" else "rank")
        self._dim(score_view.summary(result))

    def cmd_stats(self, args: str) -> None:
        s = self.session
        context = (s.context_used(), s.source.context_length)
        if not s.exchanges or s.exchanges[-1].finished is None:
            self._dim(f"context {context[0]}/{context[1]}")
            return
        last = s.exchanges[-1]
        self.console.print(stats_line(last.finished, seed=s.params.seed, context=context,
                                      interrupted=last.interrupted, detailed=True))

    # ------------------------------------------------------------------ helpers
    def _dim(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text, style="dim"))

    def _error(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(f"error: {text}", style="red"))

    def _notices(self) -> None:
        while self.session.notices:
            self._dim(self.session.notices.pop(0))

    def _autosave(self) -> None:
        if self.autosave and self.session.exchanges:
            try:
                store.save(self.session, self.autosave)
            except OSError:
                pass


def describe_weights(source) -> str:
    """Plain words for how a model computes: "int4 weights (with int8 groups), llmchat's own CPU
    forward pass" rather than "weights none on llmchat's forward"."""
    kinds = [k for k in str(source.weights).split("+") if k]
    names = {"none": "unquantized weights", "int4": "int4 weights", "int8": "int8 weights",
             "int8-group": "int8 weights in groups of 32"}
    names.update({k: k.removeprefix("gguf-").upper() + " blocks" for k in kinds if k.startswith("gguf-")})
    weights = " + ".join(names.get(k, k) for k in kinds) or "weights"
    engine = {"llmchat": "llmchat's own CPU forward pass", "transformers": "transformers' modeling code"}
    where = getattr(source, "device", None)
    return f"{weights}, computed by {engine.get(source.backend, source.backend)}" + (f" on {where}" if where else "")


def _empty_device_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def _stamp() -> str:
    import time

    return time.strftime("%Y%m%d-%H%M%S")
