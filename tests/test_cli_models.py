"""`llmchat models`, `models show`, --version/--help, and every bad model input through the real CLI."""

from __future__ import annotations

import json

import pytest

from bad_models import pickle_only_folder, remote_code_folder
from conftest import stderr_of_main
from llmchat.model.files import gguf_file


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("llmchat: error: ")
    return lines[0]


def test_version_and_help(cli):
    from llmchat import __version__

    proc = cli("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"llmchat {__version__}")
    proc = cli("--help")
    assert proc.returncode == 0 and "models" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["models"], ["models", "--json"]])
def test_fast_paths_never_import_torch(args):
    assert stderr_of_main(args).endswith("NO-TORCH")


def test_models_json_lists_registry_with_availability(cli, tiny):
    proc = cli("--models", str(tiny["toml"]), "models", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {row["alias"]: row for row in data["models"]}
    assert data["default"] == "smollm2" and rows["smollm2"]["default"]
    assert rows["smollm2"]["available"] and rows["tiny-llama"]["available"]
    assert rows["smollm2"]["size"] > 90_000_000
    assert not rows["llama-3.2-1b-instruct"]["available"]
    assert rows["llama-3.2-1b-instruct"]["fetch"] == "hf download meta-llama/Llama-3.2-1B-Instruct"


def test_models_table(cli):
    proc = cli("models")
    assert proc.returncode == 0
    assert "smollm2 *" in proc.stdout and "deepseek-v3" in proc.stdout
    assert "\x1b" not in proc.stdout  # a pipe gets no colour codes


def test_models_show_tiny_deepseek(cli, tiny):
    proc = cli("--models", str(tiny["toml"]), "models", "show", "tiny-deepseek", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["architecture"] == "DeepseekV3ForCausalLM" and info["layers"] == 2 and info["hidden_size"] == 64
    assert info["chat_template"] == "deepseek" and info["context_length"] == 256
    assert info["transformers_folder"] == str(tiny["deepseek_v3"])
    assert info["parameters"] > 0 and info["stored_dtype"] == "F32"
    assert [e["token"] for e in info["eos_ids"]] == ["<｜end▁of▁sentence｜>"]


@pytest.mark.smollm2
def test_models_show_smollm2(cli):
    proc = cli("models", "show", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["alias"], info["architecture"], info["layers"], info["heads"], info["kv_heads"]) == (
        "smollm2", "LlamaForCausalLM", 30, 9, 3)
    assert info["vocab_size"] == 49152 and info["context_length"] == 8192 and info["chat_template"] == "chatml"
    assert 130e6 < info["parameters"] < 140e6
    assert {"id": 2, "token": "<|im_end|>"} in info["eos_ids"]
    proc = cli("models", "show")
    assert proc.returncode == 0 and "LlamaForCausalLM" in proc.stdout


def _truncated_gguf(tmp_path, registry):
    source = gguf_file(registry.get("smollm2"))
    path = tmp_path / "truncated.gguf"
    with open(source, "rb") as fh:
        path.write_bytes(fh.read(5_000_000))
    return path


@pytest.mark.parametrize("case, code, fragment", [
    ("unknown-alias", 3, "did you mean smollm2"),
    ("missing-path", 3, "does not exist"),
    ("missing-gguf", 3, "does not exist"),
    ("not-a-model-folder", 3, "not a model folder"),
    ("garbage-gguf", 4, "GGUF magic"),
    ("truncated-gguf", 4, "truncated"),
    ("pickle-only", 4, "pickle"),
    ("remote-code", 4, "trust_remote_code"),
    ("malformed-toml", 2, "bad.toml:3"),
])
def test_bad_model_inputs_give_one_line_and_exit_code(cli, tmp_path, tiny, registry, case, code, fragment):
    args = {
        "unknown-alias": lambda: ["smolm2"],
        "missing-path": lambda: [str(tmp_path / "nowhere")],
        "missing-gguf": lambda: [str(tmp_path / "model.gguf")],
        "not-a-model-folder": lambda: [str(tmp_path)],
        "garbage-gguf": lambda: [str(tmp_path / "g.gguf")] if (tmp_path / "g.gguf").write_bytes(b"\0" * 4096) else [],
        "truncated-gguf": lambda: [str(_truncated_gguf(tmp_path, registry))],
        "pickle-only": lambda: [str(pickle_only_folder(tmp_path, tiny))],
        "remote-code": lambda: [str(remote_code_folder(tmp_path, tiny))],
        "malformed-toml": lambda: ["--models-placeholder"],
    }[case]()
    prefix: list[str] = []
    if case == "malformed-toml":
        bad = tmp_path / "bad.toml"
        bad.write_text('[models.x]\npath = "y"\ncolour = "red"\n')
        prefix, args = ["--models", str(bad)], []
    proc = cli(*prefix, "models", "show", *args)
    assert proc.returncode == code, proc.stderr
    assert fragment in one_error_line(proc)
    assert proc.stdout == ""


def test_usage_error_is_one_line(cli):
    proc = cli("models", "--no-such-flag")
    assert proc.returncode == 2
    assert "--no-such-flag" in one_error_line(proc)


def test_debug_shows_the_traceback(cli):
    proc = cli("--debug", "models", "show", "smolm2")
    assert proc.returncode == 3 and "Traceback" in proc.stderr
