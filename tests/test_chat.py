"""`llmchat chat`: the command parser, session operations, the REPL end to end, saved files."""

from __future__ import annotations

import dataclasses
import io
import json
import stat

import pytest
from rich.console import Console

from llmchat.chat import store
from llmchat.chat.commands import Command, parse
from llmchat.chat.session import Session
from llmchat.engine.source import LocalModel
from llmchat.errors import ContextOverflow, UsageError
from llmchat.engine.events import Finished
from llmchat.model.load import load
from llmchat.config.registry import ModelSpec
from llmchat.chat.repl import Repl
from llmchat.engine.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0, max_new_tokens=12, seed=1)


def test_parser_decides_message_or_command():
    assert parse("hello") == "hello"
    assert parse("q") == "q" and parse("exit") == "exit"  # bare words are messages
    assert parse("/view probs") == Command("view", "probs")
    assert parse("/") == Command("help", "")
    assert parse("/BRANCH 3 \"x y\"") == Command("branch", '3 "x y"')
    assert parse("//etc/passwd is a path") == "/etc/passwd is a path"


def drain(iterator):
    events = [item for item in iterator]
    assert isinstance(events[-1], Finished)
    return events[:-1], events[-1]


@pytest.fixture
def session(loaded):
    return Session(source=LocalModel(loaded("tiny-llama")), params=GREEDY)


def test_turns_reuse_the_cache_and_undo_retry_clear(session):
    events, first = drain(session.ask("Hello"))
    assert session.exchanges[0].events == events and first.reused_tokens == 0
    _, second = drain(session.ask("And again"))
    assert second.reused_tokens > first.prompt_tokens - 2  # only the new turn was prefilled
    assert len(session.messages()) == 4
    removed = session.undo()
    assert removed.user == "And again" and len(session.exchanges) == 1
    seed = session.params.seed
    drain(session.retry())
    assert len(session.exchanges) == 1 and session.params.seed == seed + 1
    session.clear()
    assert session.exchanges == [] and session.source.cache.tokens == []
    with pytest.raises(UsageError):
        session.undo()


def test_set_validates(session):
    assert session.set("temperature", "0.5") == "temperature = 0.5"
    assert session.set("max_tokens", "7") == "max_tokens = 7" and session.params.max_new_tokens == 7
    for key, value in (("temperature", "-1"), ("top_p", "2"), ("colour", "1"), ("top_k", "x")):
        with pytest.raises(UsageError):
            session.set(key, value)


def test_context_full_drops_oldest_exchanges_never_system(loaded):
    model = loaded("tiny-llama")
    session = Session(source=LocalModel(dataclasses.replace(model, context_length=120)), params=GREEDY, system="Be brief.")
    for n in range(8):
        drain(session.ask(f"Message number {n} with some words in it"))
    assert any("dropped the oldest" in notice for notice in session.notices)
    assert session.messages()[0] == {"role": "system", "content": "Be brief."}
    assert session.exchanges[-1].user == "Message number 7 with some words in it"
    with pytest.raises(ContextOverflow):
        drain(session.ask("word " * 200))
    assert session.exchanges[-1].user.startswith("Message number 7")  # the refused message is not kept


def test_branch_forces_the_alternative_and_continues(session):
    events, _ = drain(session.ask("Tell me"))
    n = min(3, len(events) - 1)
    alternative = events[n].alternatives[1]
    new, _ = drain(session.branch(n, "1"))
    branched = session.exchanges[-1].events
    assert [e.id for e in branched[:n]] == [e.id for e in events[:n]]
    assert branched[n].id == alternative.id and abs(branched[n].prob - alternative.prob) < 1e-9
    assert [e.index for e in branched] == list(range(len(branched)))
    text = session.source.tokenizer.decode([e.id for e in branched], skip_special_tokens=True)
    assert "".join(e.text for e in branched) == text == session.exchanges[-1].raw
    with pytest.raises(UsageError):
        session.branch(999, "0")
    with pytest.raises(UsageError):
        session.branch(0, "99")


def test_branch_with_a_literal_string(session):
    drain(session.ask("Tell me"))
    drain(session.branch(1, '"Hello world"'))
    assert "Hello world" in session.exchanges[-1].raw


def test_thinking_is_split_and_not_sent_back(scripted):
    model = load(ModelSpec(alias="scripted", source="path", location=str(scripted)), dtype="float32")
    session = Session(source=LocalModel(model), params=GREEDY.with_overrides(max_new_tokens=30))
    drain(session.ask("hi"))
    ex = session.exchanges[0]
    assert ex.thinking.strip() == "Let me think. Six times seven." and ex.answer.strip() == "The answer is 42."
    session.exchanges.append(type(ex)(user="again"))
    rendered = model.tokenizer.decode(session.prompt_ids())  # what turn 2 sends to the model
    assert "42." in rendered and "Six times seven" not in rendered  # the template drops earlier reasoning


def test_save_load_roundtrip_and_errors(session, tmp_path):
    drain(session.ask("Hello"))
    path = store.save(session, tmp_path / "chat.json")
    record = json.loads(path.read_text())
    assert record["version"] == 1 and record["turns"][0]["tokens"][0]["id"] == session.exchanges[0].events[0].id
    other = Session(source=session.source, params=GREEDY)
    store.restore(other, store.load(path))
    assert other.messages() == session.messages()
    assert [e.id for e in other.exchanges[0].events] == [e.id for e in session.exchanges[0].events]
    bad = tmp_path / "bad.json"
    for text, fragment in (('{"version": 1,\n "turns": [}', "bad.json:2"), ('{"version": 9}', "version 9"),
                           ('{"version": 1, "turns": [], "messages": [{"role": "wizard"}]}', "unknown role")):
        bad.write_text(text)
        with pytest.raises(UsageError, match=fragment):
            store.load(bad)


def test_failed_save_keeps_the_conversation(session, tmp_path):
    drain(session.ask("Hello"))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(OSError):
        store.save(session, blocker / "x.json")
    assert len(session.exchanges) == 1
    text = run_repl(session, [f"/save {blocker / 'x.json'}", f"/save {tmp_path / 'ok.json'}", "/exit"], tmp_path)
    assert "could not save" in text and "the conversation is still here" in text
    assert (tmp_path / "ok.json").exists() and not list(tmp_path.glob("*.tmp"))


def run_repl(session, lines: list[str], tmp_path, registry=None, width=250):
    """Drive the real REPL with prompt_toolkit's pipe input; returns what the console printed."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    out = io.StringIO()
    console = Console(file=out, width=width, height=40, force_terminal=False, color_system=None, markup=False,
                      highlight=False, emoji=False)
    with create_pipe_input() as pipe:
        pipe.send_text("".join(line + "\r" for line in lines))
        pipe.close()
        repl = Repl(session, console, registry=registry, load_model=lambda spec: LocalModel(load(spec, dtype="float32")),
                    history=tmp_path / "history", input=pipe, output=DummyOutput(), autosave=tmp_path / "last.json")
        assert repl.run() == 0
    return out.getvalue()


def test_repl_end_to_end(session, tmp_path, registry):
    saved = tmp_path / "conv.json"
    text = run_repl(session, ["Hello there", "/inspect", "/inspect 0", "/branch 1 1", "/undo", "q",
                              f"/save {saved}", "/clear", f"/load {saved}", "/set temperature 0.3", "/set",
                              "/view probs", "/tokens", "/stats", "/nonsense", "/exit"], tmp_path, registry)
    assert "top alternatives" in text and "◂ chosen" in text
    assert "removed: Hello there" in text
    assert "unknown command /nonsense" in text and "/branch N ALT" in text
    assert "temperature = 0.3" in text and "view: probs" in text and "token probability:" in text
    assert "the model reads exactly this" in text
    assert session.exchanges[0].user == "q"  # a bare word is a message
    assert saved.exists() and (tmp_path / "last.json").exists()
    assert stat.S_IMODE((tmp_path / "history").stat().st_mode) == 0o600
    assert "Hello there" in (tmp_path / "history").read_text()


def test_repl_thinking_collapses_to_one_line(scripted, tmp_path):
    model = load(ModelSpec(alias="scripted", source="path", location=str(scripted)), dtype="float32")
    session = Session(source=LocalModel(model), params=GREEDY.with_overrides(max_new_tokens=30))
    text = run_repl(session, ["What is six times seven?", "/exit"], tmp_path)
    assert "thought for 7 tokens" in text  # 6 reasoning tokens + </think>
    assert "The answer is 42." in text and "Six times seven" not in text.split("thought for")[1]


def test_ctrl_c_mid_answer_keeps_the_partial_answer_and_the_session(scripted, tmp_path, monkeypatch):
    from llmchat.render import chat_view

    model = load(ModelSpec(alias="scripted", source="path", location=str(scripted)), dtype="float32")
    session = Session(source=LocalModel(model), params=GREEDY.with_overrides(max_new_tokens=30))
    original = chat_view.AnswerView.event
    seen = []

    def interrupt_after_three(self, event, *split):
        seen.append(event)
        if len(seen) == 3:
            raise KeyboardInterrupt
        original(self, event, *split)

    monkeypatch.setattr(chat_view.AnswerView, "event", interrupt_after_three)
    text = run_repl(session, ["first", "second", "/exit"], tmp_path)
    assert "interrupted" in text
    first = session.exchanges[0]
    assert first.interrupted and 2 <= len(first.events) <= 4
    assert len(session.exchanges) == 2 and not session.exchanges[1].interrupted  # the session went on


def test_render_snapshots_of_tokens_and_probs_views(loaded):
    from llmchat.engine.events import TokenEvent
    from llmchat.render.chat_view import AnswerView

    events = [TokenEvent(index=i, id=i, piece=p, bytes=t.encode(), text=t, is_special=False, prob=pr, logprob=0.0,
                         sample_prob=pr, entropy=0.1, alternatives=()) for i, (p, t, pr) in
              enumerate([("Hello", "Hello", 0.95), ("Ġworld", " world", 0.05), ("!", "!", 0.5)])]
    rendered = {}
    for view in ("tokens", "probs"):
        console = Console(record=True, width=60, force_terminal=True, color_system="truecolor", file=io.StringIO())
        answer = AnswerView(console, view, "show")
        for event in events:
            answer.event(event, [("answer", event.text)], "answer")
        answer.close([])
        rendered[view] = console.export_text(styles=True)
    assert rendered["tokens"] == (
        "\x1b[38;2;0;0;0;48;2;198;226;255mHello\x1b[0m\x1b[38;2;0;0;0;48;2;255;217;179m world\x1b[0m"
        "\x1b[38;2;0;0;0;48;2;201;242;199m!\x1b[0m\n")
    assert rendered["probs"] == (
        "\x1b[38;2;0;0;0;48;2;221;225;49mHello\x1b[0m\x1b[38;2;255;255;255;48;2;66;17;95m world\x1b[0m"
        "\x1b[38;2;255;255;255;48;2;33;145;140m!\x1b[0m\n")


def test_hostile_model_text_is_escaped_in_every_view(tmp_path):
    from scripted_model import build_scripted

    folder = build_scripted(tmp_path / "hostile", ["\x1b[2J\x1b]0;pwned\x07", "[bold]x[/bold]", "</think>", "ok\r\x08"])
    model = load(ModelSpec(alias="hostile", source="path", location=str(folder)), dtype="float32")
    for view in ("text", "tokens", "probs"):
        session = Session(source=LocalModel(model), params=GREEDY, view=view)
        text = run_repl(session, ["hi", "/inspect", "/tokens", "/exit"], tmp_path)
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\x08" not in text
        assert "␛[2J" in text and "[bold]x[/bold]" in text
        assert "\x1b[2J" in session.exchanges[0].raw + session.exchanges[0].thinking  # the data keeps the exact text


def test_model_switch_keeps_the_conversation_going(loaded, registry, tmp_path):
    session = Session(source=LocalModel(loaded("tiny-llama")), params=GREEDY.with_overrides(max_new_tokens=4))
    text = run_repl(session, ["hello", "/model tiny-r1", "again", "/exit"], tmp_path, registry=registry)
    assert "model: tiny-r1" in text and session.source.spec.alias == "tiny-r1"
    assert len(session.exchanges) == 2 and session.exchanges[-1].finished is not None
