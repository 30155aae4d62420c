"""Model folders that must be refused, built from the tiny Llama."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def pickle_only_folder(tmp_path: Path, tiny: dict) -> Path:
    """config.json plus pytorch_model.bin, no safetensors."""
    import torch

    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny["llama"] / "config.json", folder)
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    return folder


def remote_code_folder(tmp_path: Path, tiny: dict) -> Path:
    """A model whose config names an unknown architecture through auto_map (custom code)."""
    folder = tmp_path / "remote"
    shutil.copytree(tiny["llama"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="totally_custom", auto_map={"AutoModelForCausalLM": "modeling_custom.CustomLM"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder
