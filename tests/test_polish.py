"""The everyday surface (issue 13): flag validation, input order, shell loops, messages, global
options anywhere. Each test reproduces what a user ran into, through the real CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from conftest import LLMCHAT
from test_ask import tiny_cli  # noqa: F401  (the fixture: the CLI with the tiny models' registry)


def one_line(proc) -> str:
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--dtype", "fp16"], "did you mean --dtype float16?"),
    (["--dtype", "bf16"], "did you mean --dtype bfloat16?"),
    (["--device", "gpu"], "did you mean --device cuda?"),
    (["--quant", "q4"], "did you mean --quant int4?"),
    (["--dtype", "wat"], "is not one of auto, float32, bfloat16, float16"),
])
def test_dtype_device_quant_are_checked_at_parse_time(cli, args, fragment):
    for command in (["ask", "hi"], ["next", "hi"], ["chat"], ["score", "a b"]):
        proc = cli(*command[:1], *args, *command[1:])
        assert proc.returncode == 2 and fragment in one_line(proc) and "internal error" not in proc.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_device_is_one_clear_line(cli):
    proc = cli("ask", "--device", "cuda", "hi")
    assert proc.returncode == 2 and "no CUDA device is available" in one_line(proc)


def test_global_options_work_after_the_subcommand(cli, tiny):
    proc = cli("ask", "--dtype", "fp17", "hi", "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr  # --debug took effect
    proc = cli("models", "--json", "--models", str(tiny["toml"]))
    assert proc.returncode == 0 and "tiny-llama" in [m["alias"] for m in json.loads(proc.stdout)["models"]]
    proc = cli("ask", "-m", "tiny-llama", "-n", "1", "--raw", "--json", "--", "--debug")  # after --: the prompt
    assert proc.returncode == 3 and "unknown model 'tiny-llama'" in one_line(proc)  # no traceback: not --debug


def test_documents_come_first_and_truncate_never_cuts_the_question(tiny_cli, loaded, tmp_path, monkeypatch):
    from llmchat.cli import inputs

    monkeypatch.setattr(inputs, "caller_reads_stdin", lambda: False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\n")))
    notes = tmp_path / "notes.txt"
    notes.write_text("from a file\n")
    parts = inputs.gather_parts("summarise", [str(notes)], "strict", stdin_is_tty=False)
    assert parts.text == "from stdin\n\nfrom a file\n\nsummarise"
    assert parts.text[len(parts.text) - parts.keep:] == "\n\nsummarise"
    # a document far larger than the context (tiny-llama: 256 tokens), the question after it
    big = tmp_path / "big.txt"
    big.write_text("lorem ipsum dolor sit amet " * 400)
    question = "Summarise the text above."
    proc = tiny_cli("ask", "-m", "tiny-llama", "-f", str(big), question, "--truncate", "--raw", "--json", "-n", "4")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["truncated_tokens"] > 0 and record["prompt_tokens"] + 4 <= 256
    from llmchat.engine.source import LocalModel
    from llmchat.prompt.build import prepare

    source = LocalModel(loaded("tiny-llama"))
    text = big.read_text().rstrip("\n") + "\n\n" + question
    prompt = prepare(source, text, system=None, raw=True, truncate=True, max_new_tokens=4, keep=len("\n\n" + question))
    assert source.tokenizer.decode(prompt.ids, skip_special_tokens=True).endswith(question)
    long_question = "why " * 300
    proc = tiny_cli("ask", "-m", "tiny-llama", "-f", str(big), long_question, "--truncate", "--raw", "-n", "4")
    assert proc.returncode == 5 and "the question alone is" in one_line(proc)


def test_a_shell_while_read_loop_keeps_its_lines(tiny, tmp_path):
    script = (f'printf "one\\ntwo\\nthree\\n" | while read l; do "{LLMCHAT}" --models "{tiny["toml"]}" ask -m tiny-llama '
              '--raw -n 1 --json "Repeat: $l" | head -c 0; echo "done $l"; done')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.split("\n")[:3] == ["done one", "done two", "done three"], out.stderr


def test_a_pipe_into_ask_with_a_question_still_reads_the_pipe(tiny, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("alpha beta gamma\n")
    cmd = f'cat "{doc}" | "{LLMCHAT}" --models "{tiny["toml"]}" ask -m tiny-llama --raw -n 1 --json "q"'
    piped = json.loads(subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120).stdout)
    alone = subprocess.run([LLMCHAT, "--models", str(tiny["toml"]), "ask", "-m", "tiny-llama", "--raw", "-n", "1",
                            "--json", "q"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert piped["prompt_tokens"] > json.loads(alone.stdout)["prompt_tokens"]


@pytest.mark.parametrize("args, fragment", [
    (["ask", "--logprobs", "3", "hi"], "add --json"),
    (["ask", "--raw", "-s", "Be brief.", "hi"], "system prompt would be dropped"),
    (["ask", "--hide-thinking", "--thinking-to-stderr", "hi"], "contradict"),
    (["tokenize", "--decode", "--chat", "1 2"], "--chat without --decode"),
])
def test_silent_combinations_are_usage_errors(cli, args, fragment):
    proc = cli(*args)
    assert proc.returncode == 2 and fragment in one_line(proc)


def test_next_does_not_suggest_a_flag_it_lacks(cli):
    proc = cli("next", "")
    assert proc.returncode == 2 and "-f FILE" not in one_line(proc) and "argument or on stdin" in proc.stderr


def test_chat_set_and_view_messages(loaded, tmp_path):
    from llmchat.chat.session import Session
    from llmchat.engine.sampling import SamplingParams
    from llmchat.engine.source import LocalModel
    from test_chat import run_repl

    session = Session(source=LocalModel(loaded("tiny-llama")), params=SamplingParams(temperature=0, max_new_tokens=2))
    text = run_repl(session, ["/set seed", "/set seed x", "/view", "/view nope", "/exit"], tmp_path)
    assert "e.g. /set seed 42" in text and "0.7" not in text and "a whole number" in text
    assert "view: text (choose with /view text" in text and "/view nope: there is no such view" in text
    assert "/view ?" not in text


def test_resuming_a_chat(cli, loaded, tmp_path):
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    nothing = cli("chat", "--continue", env=state)
    assert nothing.returncode == 2 and "no conversation to continue" in one_line(nothing)
    both = cli("chat", "--continue", "--load", "x.json", env=state)
    assert both.returncode == 2 and "pick one" in one_line(both)

    from llmchat.chat import store
    from llmchat.chat.session import Session
    from llmchat.engine.sampling import SamplingParams
    from llmchat.engine.source import LocalModel
    from test_chat import run_repl

    session = Session(source=LocalModel(loaded("tiny-llama")), params=SamplingParams(temperature=0.3, max_new_tokens=3),
                      system="Be brief.", view="probs")
    run_repl(session, ["Tell me about the weather in a long sentence please", "/exit"], tmp_path)
    saved = store.load(store.save(session, tmp_path / "chat.json"))
    assert store.summary(saved) == "resumed 1 exchange with tiny-llama · last: \u201cTell me about the weather in a long sentence…\u201d"
    given = dict(temperature=None, top_p=None, top_k=None, min_p=None, repetition_penalty=None, seed=None, max_tokens=9)
    params = store.saved_params(saved, SamplingParams(max_new_tokens=9), given)  # 9 from -n 9
    assert params.temperature == 0.3 and params.max_new_tokens == 9  # saved, except what the command line gives
    assert saved["view"] == "probs" and saved["system"] == "Be brief."

    text = run_repl(session, ["/system", "/system --clear", "/system", "/exit"], tmp_path)
    assert "system prompt: Be brief." in text and "system prompt removed" in text and "no system prompt" in text


def test_branch_takes_the_word_as_inspect_shows_it(smollm2):
    from llmchat.chat.session import Session
    from llmchat.engine.sampling import SamplingParams
    from llmchat.engine.source import LocalModel

    session = Session(source=LocalModel(smollm2), params=SamplingParams(temperature=0, max_new_tokens=12))
    events = [e for e in session.ask("What is the capital of Australia?") if not hasattr(e, "reason")]
    n = next(i for i, e in enumerate(events) if e.text == " Canberra")
    sydney = next(a for a in events[n].alternatives if a.piece == "ĠSydney")
    for spelling in ("Sydney", "␣Sydney", str(events[n].alternatives.index(sydney))):
        list(session.branch(n, spelling))
        forced = session.exchanges[-1].events[n]
        assert forced.id == sydney.id and forced.text == " Sydney" and abs(forced.prob - sydney.prob) < 1e-9
        assert "isSydney" not in session.exchanges[-1].raw and "␣" not in session.exchanges[-1].raw
    list(session.branch(n, '"␣Melbourne"'))  # not an alternative: the literal text, ␣ read as a space
    assert session.exchanges[-1].raw.startswith("The capital of Australia is Melbourne")


def _events():
    from llmchat.engine.events import TokenEvent

    return [TokenEvent(index=i, id=i, piece=t, bytes=t.encode(), text=t, is_special=False, prob=p, logprob=0.0,
                       sample_prob=p, entropy=0.1, alternatives=())
            for i, (t, p) in enumerate([("Hello", 0.95), (" world", 0.05), ("!", 0.37)])]


@pytest.mark.parametrize("view, expected", [("tokens", "Hello| world|!"), ("probs", "Hello world[5%]![37%]")])
def test_views_without_colour_show_marks(view, expected):
    from rich.console import Console

    from llmchat.render.chat_view import AnswerView
    from llmchat.render.stream import AnswerWriter, RichSink
    from llmchat.render.styles import write_legend

    for no_color, system in ((True, "truecolor"), (False, None)):  # NO_COLOR=1, and TERM=dumb
        chat = Console(file=io.StringIO(), force_terminal=True, no_color=no_color, color_system=system, width=100)
        view_ = AnswerView(chat, view, "show")
        for event in _events():
            view_.event(event, [("answer", event.text)], "answer")
        view_.close([])
        assert chat.file.getvalue().strip() == expected
        ask = Console(file=io.StringIO(), force_terminal=True, no_color=no_color, color_system=system, width=100)
        writer = AnswerWriter(RichSink(ask), None, view=view)
        for event in _events():
            writer.event(event, [("answer", event.text)])
        writer.end_line()
        assert "\x1b[" not in ask.file.getvalue().replace("\x1b[0m", "") or no_color
        assert ask.file.getvalue().replace("\x1b[0m", "").strip() == expected
        write_legend(ask)
        assert "[p%] follows each token" in ask.file.getvalue()


@pytest.mark.parametrize("system", ["truecolor", "256", "standard"])
def test_every_probability_band_has_its_own_colour(system):
    import re

    from rich.console import Console

    from llmchat.render.styles import legend_text

    console = Console(file=io.StringIO(), force_terminal=True, color_system=system, width=200)
    console.print(legend_text(system))
    codes = re.findall(r"\x1b\[([0-9;]+)m [^\x1b]+ ", console.file.getvalue())
    backgrounds = [re.sub(r"^(?:\d+;)*?(?:3\d|9\d|38;5;\d+|38;2;\d+;\d+;\d+);", "", c) for c in codes]
    assert len(codes) == 5 and len(set(backgrounds)) == 5, codes


def _stream_markdown(text: str, height: int = 20) -> list[str]:
    from rich.console import Console

    from llmchat.render.chat_view import MarkdownStream

    console = Console(file=io.StringIO(), width=80, height=height, force_terminal=False, color_system=None)
    stream = MarkdownStream(console)
    for n in range(0, len(text), 3):  # token-sized deltas
        stream.feed(text[n:n + 3])
    stream.close()
    return [line.rstrip() for line in console.file.getvalue().split("\n")]


def test_the_text_view_keeps_the_models_lines():
    poem = "Rain on the roof,\nsoft and slow.\n\nThe gutters sing,\nthe rivers grow."
    lines = _stream_markdown(poem)
    assert lines[:5] == ["Rain on the roof,", "soft and slow.", "", "The gutters sing,", "the rivers grow."]
    code = "Here:\n\n```\na = 1\nb = 2\n```\n\nDone."
    assert [line.strip() for line in _stream_markdown(code) if line.strip()] == ["Here:", "a = 1", "b = 2", "Done."]


def test_an_answer_taller_than_the_screen_is_drawn_one_way():
    import re

    fruits = "\n".join(f"{n}. fruit{n}" for n in range(1, 61))
    lines = [line for line in _stream_markdown(fruits, height=20) if line.strip()]
    assert len(lines) == 60
    assert all(re.fullmatch(rf"\s*{n} fruit{n}", line) for n, line in zip(range(1, 61), lines)), lines[30:40]
    assert not any(re.match(r"\d+\. ", line) for line in lines)  # no raw Markdown left in the scrollback


def test_a_long_prompt_can_be_stopped_between_chunks_and_the_cache_stays_right(smollm2):
    from llmchat.engine.events import Finished
    from llmchat.engine.loop import PREFILL_CHUNK, PromptCache, generate
    from llmchat.engine.sampling import SamplingParams

    ids = smollm2.tokenizer.encode("the quick brown fox jumps over the lazy dog " * 120)[:3 * PREFILL_CHUNK + 17]
    params = SamplingParams(temperature=0, max_new_tokens=4)
    seen: list[tuple[int, int]] = []
    cache = PromptCache()
    items = list(generate(smollm2, ids, params, cache=cache, should_stop=lambda: bool(seen),
                          on_prefill=lambda done, total: seen.append((done, total))))
    assert seen == [(PREFILL_CHUNK, len(ids))]  # stopped after the first chunk
    assert len(items) == 1 and isinstance(items[0], Finished) and items[0].reason == "interrupted"
    assert items[0].generated_tokens == 0 and cache.tokens == ids[:PREFILL_CHUNK]
    progress: list[tuple[int, int]] = []
    resumed = list(generate(smollm2, ids, params, cache=cache, on_prefill=lambda d, t: progress.append((d, t))))
    fresh = list(generate(smollm2, ids, params))
    assert resumed[-1].reused_tokens == PREFILL_CHUNK and progress[-1] == (len(ids) - PREFILL_CHUNK,) * 2
    assert [e.id for e in resumed[:-1]] == [e.id for e in fresh[:-1]]


def test_ctrl_c_during_a_long_prompt_in_ask(tmp_path):
    import signal
    import time

    big = tmp_path / "big.txt"
    big.write_text("word " * 7000)
    proc = subprocess.Popen([LLMCHAT, "ask", "-f", str(big), "Summarise.", "--no-server", "-t", "0", "-n", "8"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)  # loaded, and inside the ~7,000-token prompt (about 6 s of prefill here)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.decode().strip().splitlines()[-1] == "llmchat: interrupted"
    assert out.strip() == b""  # stopped before the first token, not after it


def test_pipes_are_never_wrapped_or_padded(cli, tmp_path):
    show = cli("models", "show").stdout.splitlines()
    gguf = [line for line in show if line.startswith("gguf file")]
    assert len(gguf) == 1 and gguf[0].endswith(".gguf")  # the path whole, on its line
    listing = cli("models", env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")}).stdout.splitlines()
    assert all(line == line.rstrip() for line in show + listing)
    assert listing[-1].endswith(f"add models in {tmp_path / 'cfg' / 'llmchat' / 'models.toml'}")
    wide = cli("next", "-k", "100000", "Hi").stdout.splitlines()
    assert wide[-1].startswith("entropy ") and "the top 49152 hold 100.0%" in wide[-1]


def test_help_is_whole_consistent_and_has_examples(tmp_path):
    env = dict(__import__("os").environ, COLUMNS="120")
    top = subprocess.run([LLMCHAT, "--help"], capture_output=True, text=True, env=env).stdout
    commands = top.split("Commands:")[1].strip().splitlines()
    assert len(commands) == 7 and not any(line.rstrip().endswith("...") for line in commands)
    for name in ("tokenize", "ask", "chat", "next", "score", "serve"):
        text = subprocess.run([LLMCHAT, name, "--help"], capture_output=True, text=True, env=env).stdout
        assert "Examples:" in text and f"llmchat {name}" in text.split("Examples:")[1], name
        assert not any(mark in text for mark in ("<str>", "<int>", "<float>", "list[")), (name, text)
    ask = subprocess.run([LLMCHAT, "ask", "--help"], capture_output=True, text=True, env=env).stdout
    assert "(smollm2: 0.2)" in ask and "(smollm2: 0.9)" in ask  # where the defaults come from


def test_models_toml_takes_max_tokens(tmp_path):
    from llmchat.config.registry import load_registry
    from llmchat.errors import ConfigError

    toml = tmp_path / "m.toml"
    toml.write_text(f'[models.x]\npath = "{tmp_path}"\n[models.x.sampling]\nmax_tokens = 77\n')
    assert load_registry(toml).get("x").sampling["max_new_tokens"] == 77
    toml.write_text(f'[models.x]\npath = "{tmp_path}"\n[models.x.sampling]\nmax_tokens = 7\nmax_new_tokens = 8\n')
    with pytest.raises(ConfigError, match="both max_tokens and max_new_tokens"):
        load_registry(toml)


def test_chat_cosmetics(loaded, registry, tmp_path):
    from llmchat.chat.session import Session
    from llmchat.engine.sampling import SamplingParams
    from llmchat.engine.source import LocalModel
    from llmchat.render.chat_view import shown
    from test_chat import run_repl

    assert shown("ðŁ") == "<F0 9F>" and shown("Ġworld") == "␣world"  # as `tokenize` shows a partial character
    session = Session(source=LocalModel(loaded("tiny-llama")), params=SamplingParams(temperature=0, max_new_tokens=512))
    text = run_repl(session, ["hi", "/tokens", "/model tiny-r1", "again", "/exit"], tmp_path, registry=registry)
    assert "max_tokens lowered from 512 to 128" in text and session.params.max_new_tokens == 128
    assert "error:" not in text
    assert len(session.exchanges) == 2 and session.exchanges[-1].finished is not None  # the message was answered
    assert "the conversation plus the generation prompt" in text
    assert "weights none" not in text and "computed by llmchat's own CPU forward pass" in text


def test_first_use_of_a_gguf_says_so_even_in_a_pipe(cli, tmp_path):
    proc = cli("tokenize", "--count", "hi", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 0 and proc.stdout.strip() == "1"
    assert proc.stderr.startswith("llmchat: note: first use of SmolLM2-135M-Instruct.Q4_1.gguf: preparing it once")
    assert proc.stderr.count("\n") == 1  # one line, no bar in a pipe
    again = cli("tokenize", "--count", "hi", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert again.stderr == ""  # cached: nothing to say


def test_branch_inside_a_character_completes_it(smollm2):
    from llmchat.chat.session import Session
    from llmchat.engine.sampling import SamplingParams
    from llmchat.engine.source import LocalModel

    session = Session(source=LocalModel(smollm2), params=SamplingParams(temperature=0, max_new_tokens=12))
    events = [e for e in session.ask("Write a smiley emoji.") if not hasattr(e, "reason")]
    split = next(i for i, e in enumerate(events) if not e.is_special and e.text == "" and i + 1 < len(events))
    list(session.branch(split, "0"))  # force the same byte token: the prefix ends inside a character
    branched = session.exchanges[-1]
    ids = [e.id for e in branched.events]
    raw = branched.raw
    if branched.finished.reason == "length":  # cut at max tokens: the *last* character may be partial
        raw = raw.removesuffix("\ufffd")
    assert "\ufffd" not in raw  # the branch point itself is completed
    assert branched.raw == smollm2.tokenizer.decode(ids, skip_special_tokens=True)


def test_a_resize_mid_answer_takes_the_new_width():
    from rich.console import Console

    from llmchat.render.chat_view import MarkdownStream

    console = Console(file=io.StringIO(), width=100, height=20, force_terminal=False, color_system=None)
    stream = MarkdownStream(console)
    paragraph = "word " * 40 + "\n\n"
    stream.feed(paragraph * 2)
    console.width = 40  # the terminal was made narrower mid-answer
    stream.feed(paragraph * 2)
    stream.close()
    lines = [line.rstrip() for line in console.file.getvalue().split("\n") if line.strip()]
    narrow = lines[len(lines) // 2:]
    assert max(len(line) for line in lines[:2]) > 40 and all(len(line) <= 40 for line in narrow)
    assert " ".join(lines).split() == ("word " * 160).split()  # every word once: nothing repeated or lost
