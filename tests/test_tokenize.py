"""`llmchat tokenize` on real tokenizers: the tiny BPE models, the real SmolLM2, transformers as the reference."""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import stderr_of_main
from llmchat.errors import ModelRejected, UsageError
from llmchat.tokenizer.templates import load_template, parse_messages
from llmchat.tokenizer.pieces import open_tokenizer

ALPHABET = st.sampled_from(list("abc xyz\n\t.,!?'|[]<>") + ["🦙", "👩‍👩‍👧", "日本語", "한국어", "é", "\u0301", "  ",
                                                              "\n\n", "١٢٣", "½", "<|im_start|>", "<think>", "\x1b[2J"])
TEXTS = st.lists(st.one_of(ALPHABET, st.text(max_size=6)), max_size=20).map("".join)

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello there!"}],
    "system": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 🦙"}],
    "multi-turn": [{"role": "system", "content": "You answer."}, {"role": "user", "content": "2+2?"},
                   {"role": "assistant", "content": "<think>easy</think>4"}, {"role": "user", "content": "And 3+3?"}],
}


@pytest.fixture(scope="session")
def smollm2_folder(registry):
    """smollm2's tokenizer folder; extracting it here (once) lets the CLI runs below read the cache."""
    from llmchat.model.files import tokenizer_folder

    return tokenizer_folder(registry.get("smollm2"))


@pytest.fixture(scope="session")
def folders(tiny, request):
    def get(name):
        return request.getfixturevalue("smollm2_folder") if name == "smollm2" else tiny[name]
    return get


@pytest.fixture(scope="session")
def ours(folders):
    """open_tokenizer on a folder, once per session (loading smollm2's takes ~60 ms)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = open_tokenizer(folders(name))
        return cache[name]
    return get


@pytest.fixture(scope="session")
def reference(folders):
    """transformers' AutoTokenizer on the same folder: the reference for ids and templates."""
    from transformers import AutoTokenizer

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = AutoTokenizer.from_pretrained(str(folders(name)))
        return cache[name]
    return get


@pytest.fixture
def tok(cli, tiny):
    """`llmchat --models TINY.toml tokenize ARGS…` as a subprocess."""
    def run(*args, input=None, env=None):
        return cli("--models", str(tiny["toml"]), "tokenize", *args, input=input, env=env)
    return run


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("llmchat: error: ")
    assert proc.stdout == ""
    return lines[0]


SMOLLM2 = pytest.param("smollm2", marks=pytest.mark.smollm2)
# transformers 5 builds Qwen2Tokenizer's pre-tokenizer itself (one digit per token, its own
# whitespace rule) instead of reading tokenizer.json, and the tiny qwen2_r1 fixture's tokenizer.json
# keeps GPT-2's pre-tokenizer: there, only texts both pre-tokenizers cut alike give the same ids.
SAME_IDS_AS_TRANSFORMERS = {"llama", "deepseek_v3", "smollm2"}


# ---------------------------------------------------------------------------- the library, against transformers

@pytest.mark.parametrize("name", ["llama", SMOLLM2])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_round_trip_and_offsets(ours, name, text):
    tokenizer = ours(name)
    assume(not tokenizer.unencodable(text))  # see test_characters_without_a_token
    pieces = tokenizer.encode(text)
    ids = [p.id for p in pieces]
    assert tokenizer.decode(ids) == text
    decoded, again = tokenizer.from_ids(ids)
    assert decoded == text
    assert b"".join(p.data for p in pieces) == text.encode()
    for piece, other in zip(pieces, again):
        assert (piece.start, piece.end, piece.data) == (other.start, other.end, other.data)
        covered = text[piece.start:piece.end]
        # whole characters: exactly its span; part of a character: the span of the characters it touches
        assert covered == piece.text if piece.text is not None else piece.data in covered.encode()


@pytest.mark.smollm2
def test_characters_without_a_token(cli, smollm2_folder, tiny):
    # smollm2's byte-level vocabulary has no token for the bytes 0xF1, 0xF2 (the lead bytes of
    # U+40000–U+BFFFF) and a few control characters: the tokenizer silently drops them.
    tokenizer = open_tokenizer(smollm2_folder)
    assert tokenizer.unencodable("a\U00040000b\x04c🦙") == ["\U00040000", "\x04"]
    assert tokenizer.decode([p.id for p in tokenizer.encode("a\U00040000b")]) != "a\U00040000b"
    assert open_tokenizer(tiny["llama"]).unencodable("a\U00040000b\x04") == []  # trained with all 256 bytes
    summary = cli("tokenize", "a\U00040000b").stdout.splitlines()[-1]
    assert summary.endswith("no token for U+40000: dropped from the ids")


@pytest.mark.parametrize("name", ["llama", "deepseek_v3", "qwen2_r1", SMOLLM2])
def test_ids_equal_transformers(folders, reference, name):
    tokenizer = open_tokenizer(folders(name))
    hf = reference(name)
    texts = ["Hello world", "a 🦙 日本語 café\n\n  x", "<|im_start|>user\nhi<think>x</think>", ""]
    if name in SAME_IDS_AS_TRANSFORMERS:
        texts += ["3.14 9.11 and ١٢٣ 2024", "  lead and trail  \n\n x"]
    for text in texts:
        assert [p.id for p in tokenizer.encode(text, special=True)] == hf(text)["input_ids"], text
    assert [p.id for p in tokenizer.encode("plain text, no specials")] == hf("plain text, no specials")["input_ids"]


@pytest.mark.parametrize("name", ["llama", "qwen2_r1", "deepseek_v3", SMOLLM2])
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_chat_render_equals_transformers(folders, reference, name, conversation):
    messages = CONVERSATIONS[conversation]
    template = load_template(folders(name))
    hf = reference(name)
    expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert template.render(messages) == expected
    assert template.render(messages, add_generation_prompt=False) == hf.apply_chat_template(messages, tokenize=False)
    if name in SAME_IDS_AS_TRANSFORMERS:
        tokenizer = open_tokenizer(folders(name))
        ids = [p.id for p in tokenizer.encode(expected, special=True, add_special_tokens=False)]
        assert ids == list(hf.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))


def with_bos(tmp_path, tiny):
    """A copy of the tiny Llama whose tokenizer.json puts BOS in front of every text (as Llama 3's does)."""
    folder = tmp_path / "with-bos"
    shutil.copytree(tiny["llama"], folder)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    bos = {"id": "<|begin_of_text|>", "type_id": 0}
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": bos}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": bos}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": bos},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [1], "tokens": ["<|begin_of_text|>"]}}}
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder


def test_bos_added_by_the_post_processor_matches_transformers(tmp_path, tiny):
    from transformers import AutoTokenizer

    folder = with_bos(tmp_path, tiny)
    tokenizer = open_tokenizer(folder)
    pieces = tokenizer.encode("hi there")
    assert [p.id for p in pieces] == AutoTokenizer.from_pretrained(str(folder))("hi there")["input_ids"]
    assert pieces[0].piece == "<|begin_of_text|>" and pieces[0].added and (pieces[0].start, pieces[0].end) == (0, 0)
    assert (pieces[1].start, pieces[1].text) == (0, "h")
    assert tokenizer.bos_added and [p.piece for p in tokenizer.encode("")] == ["<|begin_of_text|>"]
    assert not open_tokenizer(tiny["llama"]).bos_added


def test_template_errors_are_model_rejected(tmp_path, tiny):
    folder = tmp_path / "bad-template"
    shutil.copytree(tiny["llama"], folder)
    (folder / "chat_template.jinja").write_text("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ModelRejected, match="chat template rejected: roles must alternate"):
        load_template(folder).render(CONVERSATIONS["user"])
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }")
    with pytest.raises(ModelRejected, match="chat template rejected: syntax error at line 1"):
        load_template(folder)
    (folder / "chat_template.jinja").write_text("{{ messages.__class__.__mro__ }}")
    with pytest.raises(ModelRejected, match="chat template rejected"):
        load_template(folder).render(CONVERSATIONS["user"])
    (folder / "chat_template.jinja").write_text("{% set ns = namespace(_x=1) %}")
    with pytest.raises(ModelRejected, match="underscore"):
        load_template(folder).render(CONVERSATIONS["user"])
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(ModelRejected, match="no chat template"):
        load_template(folder)


def test_template_features_transformers_provides(tmp_path, tiny):
    folder = tmp_path / "features"
    shutil.copytree(tiny["llama"], folder)
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{% generation %}{{ m | tojson }}{% endgeneration %}{% if loop.index > 5 %}{% break %}{% endif %}"
        "{% endfor %}\n{{ eos_token }}{{ strftime_now('%Y') | length }}{{ dict(a=1).a }}")
    out = load_template(folder).render([{"role": "user", "content": "<a & b>", "reasoning": "r"}])
    assert out == ('{"thinking": "r", "role": "user", "content": "<a & b>", "reasoning": "r", "reasoning_content": "r"}'
                   "<|eot_id|>41")


def test_parse_messages_names_the_problem():
    assert parse_messages([{"role": "user", "content": "x"}], "f.json")
    for data, fragment in [({"role": "user"}, "expected a JSON list"), ([], "empty"), (["hi"], "message 0 is not an object"),
                           ([{"role": "user", "content": "x"}, {"role": "user"}], "message 1 has no 'content'")]:
        with pytest.raises(UsageError, match=fragment):
            parse_messages(data, "f.json")


# ---------------------------------------------------------------------------- the command

def test_outputs_exactly_match_the_tokenizer(tok, tiny):
    text = "Hello 🦙 world\n<think>"
    pieces = open_tokenizer(tiny["llama"]).encode(text)
    ids = [p.id for p in pieces]
    proc = tok("-m", "tiny-llama", "--ids", text)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, " ".join(map(str, ids)) + "\n", "")
    assert tok("-m", "tiny-llama", "--count", text).stdout == f"{len(ids)}\n"
    data = json.loads(tok("-m", "tiny-llama", "--json", text).stdout)
    assert data == {
        "model": "tiny-llama", "text": text, "count": len(ids), "characters": len(text), "context_length": 256,
        "bos_added": False,
        "tokens": [{"index": p.index, "id": p.id, "piece": p.piece, "text": p.text, "bytes": p.data.hex(),
                    "start": p.start, "end": p.end, "special": p.special} for p in pieces]}
    assert data["tokens"][-1]["special"] and data["tokens"][-1]["piece"] == "<think>"
    table = tok("-m", "tiny-llama", "--table", text).stdout.splitlines()
    assert table[0].split() == ["#", "id", "piece", "text", "bytes", "chars", "note"]
    assert len(table) == len(ids) + 2 and table[-1].startswith(f"{len(ids)} tokens · {len(text)} characters")
    for line, p in zip(table[1:], pieces):
        assert line.split()[:2] == [str(p.index), str(p.id)] and f"{p.start}-{p.end}" in line
        assert p.data.hex(" ").upper() in line


@pytest.mark.smollm2
def test_emoji_bytes_never_mojibake(cli, smollm2_folder):
    proc = cli("tokenize", "--count", "🦙")
    assert proc.stdout == "3\n"
    proc = cli("tokenize", "Hello 🦙 world")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["Hello| <F0 9F>|<A6>|<99>| world",
                                        "5 tokens · 13 characters · 2.60 characters/token · context 5 of 8,192 (0.1%)"]
    for args in ([], ["--color"], ["--color", "-w"], ["--compare", "smollm2"]):
        out = cli("tokenize", *args, "Hello 🦙 world 日本語").stdout
        assert "ðŁ" not in out and "\ufffd" not in out and "<F0 9F>" in out, args
    for args in (["--table"], ["--color", "--table"]):  # the piece column shows the vocabulary's form, on purpose
        rows = strip_ansi(cli("tokenize", *args, "Hello 🦙 world").stdout).splitlines()
        assert rows[2].split() == ["1", "15107", "ĠðŁ", "·<F0", "9F>", "20", "F0", "9F", "5-7"], args
    data = json.loads(cli("tokenize", "--json", "🦙").stdout)
    assert [(t["piece"], t["text"], t["bytes"], t["start"], t["end"]) for t in data["tokens"]] == [
        ("ðŁ", None, "f09f", 0, 1), ("¦", None, "a6", 0, 1), ("Ļ", None, "99", 0, 1)]


def test_plain_view_has_boundaries_and_no_escape_codes(tok, tiny):
    proc = tok("-m", "tiny-llama", "Hello world")
    lines = proc.stdout.splitlines()
    assert lines[0].replace("|", "") == "Hello world" and "|" in lines[0]
    assert lines[1].startswith(f"{lines[0].count('|') + 1} tokens · 11 characters · ")
    assert "\x1b" not in proc.stdout and proc.stderr == ""
    # The tiny tokenizer is trained per session (its merges may vary): build the expectation from it.
    pieces = open_tokenizer(tiny["llama"]).encode("a b\tc\nd")
    expected = "|".join(p.text.replace(" ", "·").replace("\t", "→").replace("\n", "↵\n") for p in pieces)
    escaped = "|".join(p.text.replace("\\", "\\\\").replace("|", "\\|") for p in open_tokenizer(tiny["llama"]).encode("x|y\\z"))
    assert "\\|" in escaped and tok("-m", "tiny-llama", "x|y\\z").stdout.splitlines()[0] == escaped
    assert tok("-m", "tiny-llama", "--special", "a<|im_start|>").stdout.splitlines()[0] == "a|<|im_start|>"
    shown = tok("-m", "tiny-llama", "-w", "a b\tc\nd").stdout
    assert shown == f"{expected}\n{len(pieces)} tokens · 7 characters · {7 / len(pieces):.2f} characters/token · " \
                    f"context {len(pieces)} of 256 ({100 * len(pieces) / 256:.1f}%)\n"


def test_control_characters_and_markup_never_reach_the_terminal_raw(tok):
    text = "a\x1b[31mred\rb[bold]x[/bold]\x07"
    for args in ([], ["--table"], ["--color"], ["--color", "--table"], ["--color", "-w"], ["--decode", "1 2"]):
        out = tok("-m", "tiny-llama", *args, text if "--decode" not in args else "27 31 51 49 77")
        out = out.stdout
        assert "\r" not in out and "\x07" not in out, args
        if "--color" not in args:
            assert "\x1b" not in out
        if not args:
            assert out.split("\n")[0].replace("|", "") == "a␛[31mred␍b[bold]x[/bold]␇"
        elif "--decode" not in args:
            assert "␛" in out and "␍" in out and "␇" in out, args
    colored = strip_ansi(tok("-m", "tiny-llama", "--color", text).stdout)
    assert colored.split("\n")[0] == "a␛[31mred␍b[bold]x[/bold]␇"
    assert json.loads(tok("-m", "tiny-llama", "--json", text).stdout)["text"] == text


def test_color_view_alternates_and_honours_no_color(tok, tiny):
    from rich.console import Console

    from llmchat.render.tokenize_view import print_view
    from llmchat.tokenizer.pieces import Tokenized

    colored = tok("-m", "tiny-llama", "--color", "Hello world, again").stdout
    backgrounds = re.findall(r"\x1b\[([0-9;]*)m", colored)
    assert len(set(backgrounds[:4])) > 1 and strip_ansi(colored).startswith("Hello world, again\n")
    # NO_COLOR on a terminal: the boundaries alternate in reverse video instead of colours.
    tokenizer = open_tokenizer(tiny["llama"])
    result = Tokenized("tiny-llama", "Hello world", tokenizer.encode("Hello world"), 256)
    out = io.StringIO()
    print_view(Console(file=out, force_terminal=True, no_color=True, markup=False, highlight=False), result)
    assert "\x1b[7m" in out.getvalue() and not re.search(r"\x1b\[[0-9;]*(3[0-7]|4[0-7]|38|48)[;m]", out.getvalue())


def test_empty_text_is_zero_tokens(tok):
    for proc in (tok("-m", "tiny-llama", input=""), tok("-m", "tiny-llama", "")):
        assert proc.returncode == 0 and proc.stderr == ""
        assert proc.stdout.startswith("0 tokens · 0 characters")
    assert tok("-m", "tiny-llama", "--count", input="").stdout == "0\n"
    assert json.loads(tok("-m", "tiny-llama", "--json", "").stdout)["tokens"] == []


def test_text_from_file_and_stdin(tok, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("line one\nline 🦙\n", encoding="utf-8")
    expected = tok("-m", "tiny-llama", "--ids", "line one\nline 🦙\n").stdout
    assert tok("-m", "tiny-llama", "--ids", "-f", str(path)).stdout == expected
    assert tok("-m", "tiny-llama", "--ids", input="line one\nline 🦙\n").stdout == expected


def test_special_versus_plain_text(tok, tiny):
    ids = json.loads((tiny["toml"].parent / "ids.json").read_text())
    plain = tok("-m", "tiny-llama", "--ids", "<|im_start|>user").stdout.split()
    special = tok("-m", "tiny-llama", "--ids", "--special", "<|im_start|>user").stdout.split()
    assert special[0] == str(ids["<|im_start|>"]) and len(special) < len(plain)
    assert str(ids["<|im_start|>"]) not in plain
    assert tok("-m", "tiny-llama", "--no-special", "--ids", "<|im_start|>user").stdout.split() == plain
    summary = tok("-m", "tiny-llama", "<|im_start|>user").stdout.splitlines()[-1]
    assert "<|im_start|> read as plain text (--special" in summary


@pytest.mark.smollm2
def test_special_versus_plain_text_smollm2(cli, smollm2_folder):
    assert cli("tokenize", "--ids", "--special", "<|im_start|>user").stdout == "1 4093\n"
    assert "1" not in cli("tokenize", "--ids", "<|im_start|>user").stdout.split()


def test_decode_round_trip_and_boundaries(tok):
    text = "Hi 🦙!\n<think>ok</think>"
    ids = tok("-m", "tiny-llama", "--ids", text).stdout
    data = json.loads(tok("-m", "tiny-llama", "--decode", "--json", ids).stdout)
    assert data["text"] == text and " ".join(str(t["id"]) for t in data["tokens"]) == ids.strip()
    assert json.loads(tok("-m", "tiny-llama", "--decode", "--json", input=ids).stdout)["text"] == text
    assert json.loads(tok("-m", "tiny-llama", "--decode", "--json", "[" + ids.strip().replace(" ", ", ") + "]").stdout)["text"] == text
    view = tok("-m", "tiny-llama", "--decode", ids).stdout
    assert view.splitlines()[0].replace("|", "") == "Hi <F0 9F><A6 99>!" and "|<think>|" in view
    assert view.splitlines()[0].count("|") == next(i for i, t in enumerate(data["tokens"]) if t["text"] == "\n")


@pytest.mark.parametrize("args, code, fragment", [
    (["--decode", "1 x 3"], 2, "'x' is not a token id"),
    (["--decode", "1 -5"], 2, "'-5' is not a token id"),
    (["--decode", "1 99999"], 2, "token id 99999 is not in the vocabulary of tiny-llama"),
    (["-f", "/nonexistent/file.txt"], 2, "cannot read /nonexistent/file.txt"),
    (["--ids", "--json", "x"], 2, "--ids and --json cannot be combined"),
    (["-s", "sys", "x"], 2, "needs --chat"),
    (["--decode", "--chat", "1"], 2, "--decode cannot be combined with --chat"),
    (["--chat", "--special", "x"], 2, "--special/--no-special apply to plain text"),
    (["-f", "/dev/null", "x"], 2, "not both"),
    (["--compare", " , ", "x"], 2, "--compare needs model names"),
    (["-m", "tiny-lama", "x"], 3, "did you mean tiny-llama"),
])
def test_bad_inputs_give_one_line_and_exit_code(tok, args, code, fragment):
    proc = tok(*([] if "-m" in args or "--compare" in args else ["-m", "tiny-llama"]), *args)
    assert proc.returncode == code, proc.stderr
    assert fragment in one_error_line(proc)


def test_bad_message_files(tok, tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{'role': 'user'}]")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"role": "user", "content": "x"}))
    no_content = tmp_path / "nocontent.json"
    no_content.write_text(json.dumps([{"role": "user"}]))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    for args, fragment in [(["--messages", str(bad_json)], f"{bad_json}: invalid JSON"),
                           (["--messages", str(wrong)], f"{wrong}: expected a JSON list"),
                           (["--messages", str(no_content)], f"{no_content}: message 0 has no 'content'"),
                           (["--messages", str(tmp_path / "missing.json")], "cannot read"),
                           (["--messages", str(wrong), "extra text"], "give no TEXT")]:
        proc = tok("-m", "tiny-llama", "--chat", *args)
        assert proc.returncode == 2, proc.stderr
        assert fragment in one_error_line(proc)
    proc = tok("-m", "tiny-llama", "-f", str(binary))
    assert proc.returncode == 2 and "not UTF-8" in one_error_line(proc)


def test_template_failure_exits_4(tok, tmp_path, tiny):
    folder = tmp_path / "raising"
    shutil.copytree(tiny["llama"], folder)
    (folder / "chat_template.jinja").write_text("{{ raise_exception('Conversation roles must alternate') }}")
    proc = tok("-m", str(folder), "--chat", "hi")
    assert proc.returncode == 4
    assert "chat template rejected: Conversation roles must alternate" in one_error_line(proc)


@pytest.mark.parametrize("alias, folder", [("tiny-r1", "qwen2_r1"), ("tiny-llama", "llama"), pytest.param("smollm2", "smollm2", marks=pytest.mark.smollm2)])
def test_chat_through_the_cli_equals_transformers(tok, folders, reference, tmp_path, alias, folder):
    hf = reference(folder)
    messages = CONVERSATIONS["multi-turn"]
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps(messages))
    for args, conversation in ([["--messages", str(path)], messages],
                               [["-s", "Be brief.", "Hi 🦙"], CONVERSATIONS["system"]],
                               [["Hello there!"], CONVERSATIONS["user"]]):
        data = json.loads(tok("-m", alias, "--chat", "--json", *args).stdout)
        expected = hf.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        assert data["text"] == expected
        assert folder not in SAME_IDS_AS_TRANSFORMERS or [t["id"] for t in data["tokens"]] == list(hf.apply_chat_template(conversation, add_generation_prompt=True,
                                                                                return_dict=False))
        generation = "".join(t["text"] for t in data["tokens"][data["generation_prompt_index"]:])
        assert expected.endswith(generation) and generation.strip()
        bare = hf.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
        assert bare + generation == expected
    view = tok("-m", alias, "--chat", "Hello there!").stdout
    assert "generation prompt: the last" in view.splitlines()[-1]


def test_chat_marks_special_tokens_and_think(tok):
    data = json.loads(tok("-m", "tiny-r1", "--chat", "--json", "Why?").stdout)
    specials = [t["piece"] for t in data["tokens"] if t["special"]]
    assert specials == ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>"]
    assert [t["piece"] for t in data["tokens"][data["generation_prompt_index"]:]] == ["<｜Assistant｜>", "<think>", "Ċ"]
    colored = tok("-m", "tiny-r1", "--chat", "--color", "Why?").stdout
    assert re.search(r"\x1b\[(?:[0-9]+;)*4;[0-9;]*m<think>", colored)  # the generation prompt is underlined
    assert strip_ansi(colored).splitlines()[0].endswith("<｜Assistant｜><think>↵")  # newlines marked in a chat


def test_compare_counts(tok, tiny):
    text = "The capital of France is Paris 🦙"
    counts = tok("--compare", "tiny-llama,tiny-r1", "--count", text).stdout.splitlines()
    n = len(open_tokenizer(tiny["llama"]).encode(text))
    assert counts == [f"tiny-llama\t{n}", f"tiny-r1\t{n}"]
    data = json.loads(tok("--compare", "tiny-llama,tiny-deepseek", "--json", text).stdout)
    assert data["text"] == text and [m["model"] for m in data["models"]] == ["tiny-llama", "tiny-deepseek"]
    assert [m["count"] for m in data["models"]] == [n, n]
    view = tok("--compare", "tiny-llama,tiny-r1", text).stdout
    assert view.splitlines()[0].split() == ["model", "tokens", "characters/token", "context"]
    assert f"== tiny-r1 ==" in view and "\x1b" not in view


@pytest.mark.smollm2
def test_compare_smollm2_with_tiny(cli, tiny, smollm2_folder):
    text = "The capital of France is Paris."
    proc = cli("--models", str(tiny["toml"]), "tokenize", "--compare", "smollm2,tiny-llama", "--count", text)
    smol = len(open_tokenizer(smollm2_folder).encode(text))
    tiny_n = len(open_tokenizer(tiny["llama"]).encode(text))
    assert proc.stdout.splitlines() == [f"smollm2\t{smol}", f"tiny-llama\t{tiny_n}"] and smol < tiny_n


def test_bos_in_the_summary_and_empty_text(tok, tmp_path, tiny):
    folder = with_bos(tmp_path, tiny)
    summary = tok("-m", str(folder), "hi").stdout.splitlines()[-1]
    assert "BOS <|begin_of_text|> added by the tokenizer" in summary
    data = json.loads(tok("-m", str(folder), "--json", "").stdout)
    assert (data["count"], data["bos_added"], data["tokens"][0]["piece"]) == (1, True, "<|begin_of_text|>")


def test_tokenize_neverstderr_of_main(tiny):
    base = ["--models", str(tiny["toml"]), "tokenize"]
    assert stderr_of_main([*base, "-m", "tiny-llama", "--count", "hello"]).endswith("NO-TORCH")
    assert stderr_of_main([*base, "-m", "tiny-r1", "--chat", "--table", "hello"]).endswith("NO-TORCH")


@pytest.mark.smollm2
def test_tokenize_smollm2_never_imports_torch_once_cached(smollm2_folder):
    assert stderr_of_main(["tokenize", "--chat", "-s", "Be brief.", "hello"]).endswith("NO-TORCH")
    assert stderr_of_main(["tokenize", "--compare", "smollm2", "hello 🦙"]).endswith("NO-TORCH")


@pytest.mark.smollm2
def test_a_plain_count_skips_typer_and_counts_the_same(cli, smollm2_folder, tiny, tmp_path):
    """llmchat.__main__ answers `tokenize --count TEXT` (-m, -f) before typer is imported; its count is
    the full command's, and every other form, or an error, goes to the full CLI."""
    import subprocess
    import sys

    from llmchat import __main__ as entry

    texts = ["The capital of France is Paris 🦙", "<|im_start|>user\nHi<|im_end|>", "", "  \n\t日本語"]
    for text in texts:
        full = cli("tokenize", "--count", "--no-color", text)  # --no-color: not the plain form
        assert full.returncode == 0 and entry.fast_count(["tokenize", "--count", text]) == int(full.stdout)
        assert cli("tokenize", text, "--count").stdout == full.stdout  # the installed command, fast path
    path = tmp_path / "text.txt"
    path.write_text(texts[0], encoding="utf-8")
    assert entry.fast_count(["tokenize", "-f", str(path), "--count", "-m", "smollm2"]) == int(
        cli("tokenize", "--count", "--no-color", "-f", str(path)).stdout)
    folder_count = entry.fast_count(["tokenize", "--count", f"--model={tiny['llama']}", texts[0]])
    assert folder_count == len(open_tokenizer(tiny["llama"]).encode(texts[0]))
    for args in (["tokenize", "--count"], ["tokenize", "--count", "-f", "-"], ["tokenize", "--ids", "x"],
                 ["tokenize", "--count", "x", "y"], ["tokenize", "--count", "--json", "x"], ["ask", "--count", "x"],
                 ["tokenize", "--count", "-m", "no-such-model", "x"], ["tokenize", "--count", "-f", str(tmp_path / "none")]):
        assert entry.fast_count(args) is None, args
    missing = cli("tokenize", "--count", "-m", "no-such-model", "x")
    assert missing.returncode != 0 and missing.stderr.startswith("llmchat: error:") and "Traceback" not in missing.stderr
    code = ("import sys; import llmchat.__main__ as entry; n = entry.fast_count(['tokenize', '--count', 'hi']);"
            "print(n, 'typer' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split()
    assert out[1:] == ["False", "False"] and int(out[0]) > 0
