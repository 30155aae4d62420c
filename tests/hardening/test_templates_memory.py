"""Hostile chat templates, the memory estimate, history files, and exact bytes in JSON."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from llmchat.model import memory
from llmchat.tokenizer import templates
from llmchat.errors import ModelRejected, OutOfMemory
from llmchat.model.load import load
from llmchat.config.registry import ModelSpec

ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
RAISES = "{{ raise_exception('no system messages, please') }}"
LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


def model_with_template(tmp_path, tiny, name: str, template: str):
    folder = tmp_path / name
    shutil.copytree(tiny["llama"], folder)
    (folder / "evil.jinja").write_text(template)
    return ModelSpec(alias=name, source="path", location=str(folder), chat_template=str(folder / "evil.jinja"))


@pytest.mark.parametrize("template, fragment", [(ESCAPE, "chat template rejected"), (RAISES, "no system messages"),
                                                (LOOPS, "more than 0.5 s")])
def test_hostile_templates_are_rejected(tmp_path, tiny, monkeypatch, template, fragment):
    from llmchat.prompt import build as prompting

    monkeypatch.setattr(templates, "TEMPLATE_SECONDS", 0.5)
    spec = model_with_template(tmp_path, tiny, "evil", template)
    model = load(spec, dtype="float32")
    with pytest.raises(ModelRejected, match=fragment):
        prompting.build(model, "hi")
    chat = templates.load_template(spec.location, spec)  # the torch-free path of `tokenize --chat`
    with pytest.raises(ModelRejected, match=fragment):
        chat.render([{"role": "user", "content": "hi"}])


def test_a_rejected_template_in_chat_keeps_the_session(tmp_path, tiny):
    from llmchat.chat.session import Session
    from llmchat.engine.source import LocalModel
    from llmchat.engine.sampling import SamplingParams
    from test_chat import run_repl

    model = load(model_with_template(tmp_path, tiny, "raises", RAISES), dtype="float32")
    session = Session(source=LocalModel(model), params=SamplingParams(temperature=0, max_new_tokens=4))
    text = run_repl(session, ["hello", "/stats", "/exit"], tmp_path)
    assert "chat template rejected" in text and "no system messages" in text
    assert session.exchanges == []


def test_hostile_template_through_the_cli(cli, tmp_path, tiny):
    spec = model_with_template(tmp_path, tiny, "cli-evil", ESCAPE)
    toml = tmp_path / "m.toml"
    toml.write_text(f'[models.evil]\npath = "{spec.location}"\nchat_template = "{spec.chat_template}"\n')
    for args in (["ask", "-m", "evil", "hi"], ["tokenize", "-m", "evil", "--chat", "hi"]):
        proc = cli("--models", str(toml), *args)
        assert proc.returncode == 4, proc.stderr
        assert proc.stderr.count("\n") == 1 and "chat template rejected" in proc.stderr


def test_memory_estimate_refuses_with_numbers_and_force_overrides(tiny, monkeypatch):
    spec = ModelSpec(alias="tiny", source="path", location=str(tiny["llama"]))
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1000)  # a device with 1000 bytes free
    with pytest.raises(OutOfMemory) as info:
        load(spec, dtype="float32")
    assert "needs about" in info.value.message and "GiB free" in info.value.message and info.value.exit_code == 6
    assert "--force" in info.value.hint
    assert load(spec, dtype="float32", force=True).model is not None


def test_history_skips_entries_that_are_not_utf8(tmp_path, session_dir):
    from llmchat.chat.repl import _history

    path = tmp_path / "history"
    path.write_bytes(b"\n# t\n+good one\n\n# t\n+bad \xff\xfe entry\n\n# t\n+multi\n+line\n")
    assert list(_history(path).load_history_strings()) == ["multi\nline", "good one"]


def test_json_keeps_exact_bytes_and_terminal_output_does_not(cli, tmp_path):
    from scripted_model import build_scripted

    folder = build_scripted(tmp_path / "hostile", ["\x1b]52;c;cHduZWQ=\x07", "</think>", "\x1b[2Jdone\r"])
    proc = cli("ask", "-m", str(folder), "hi", "--json", "-t", "0", "-n", "20")
    assert proc.returncode == 0 and "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    record = json.loads(proc.stdout)
    assert "\x1b]52;c;cHduZWQ=\x07" in record["thinking"] and "\x1b[2Jdone\r" in record["answer"]
    plain = cli("ask", "-m", str(folder), "hi", "-t", "0", "-n", "20", "--hide-thinking")
    assert "\x1b" not in plain.stdout and "␛[2Jdone␍" in plain.stdout
    raw = cli("ask", "-m", str(folder), "hi", "-t", "0", "-n", "20", "--hide-thinking", "--raw-output")
    assert "\x1b[2Jdone\r" in raw.stdout  # exact bytes, on request, into a pipe


@pytest.mark.parametrize("content, fragment", [
    ('{"version": 1,\n "turns": [}', "bad.json:2: invalid JSON"),
    ('{"version": 7, "turns": []}', "version 7"),
    ('{"version": 1, "turns": [], "messages": [{"role": "root", "content": "x"}]}', "unknown role 'root'"),
    ("x" * 10, "invalid JSON"),
])
def test_chat_load_rejects_bad_conversation_files(cli, tmp_path, content, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = cli("chat", "--load", str(bad))
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert fragment in line and str(bad) in line
