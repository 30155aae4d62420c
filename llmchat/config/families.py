"""The small table of per-family differences. No `if family == ...` chains elsewhere."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """What differs between model families, as data.

    think_open/think_close: the markers of the reasoning block (R1-style models), or None.
    end_of_turn: token strings that end an assistant turn in addition to the model's eos ids
    (a chat model stops on its end-of-turn token even when the generation config forgot it).
    """

    name: str
    think_open: str | None = None
    think_close: str | None = None
    end_of_turn: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "llama": Family("llama", end_of_turn=("<|eot_id|>", "<|eom_id|>", "<|im_end|>")),
    "qwen2": Family("qwen2", end_of_turn=("<|im_end|>", "<|endoftext|>")),
    "deepseek": Family("deepseek", end_of_turn=("<｜end▁of▁sentence｜>",)),
    "deepseek-r1": Family("deepseek-r1", think_open="<think>", think_close="</think>",
                          end_of_turn=("<｜end▁of▁sentence｜>", "<|im_end|>", "<|eot_id|>")),
}

# config.json `model_type` → family, used when models.toml names none.
MODEL_TYPES: dict[str, str] = {
    "llama": "llama",
    "qwen2": "qwen2",
    "deepseek_v2": "deepseek",
    "deepseek_v3": "deepseek",
}


def detect_family(declared: str | None, model_type: str | None, chat_template: str | None,
                  thinking: bool | None = None) -> Family:
    """The declared family wins; else the architecture; a template that opens <think> (or
    `thinking = true`) makes it a reasoning family."""
    if declared:
        return FAMILIES[declared]
    base = FAMILIES[MODEL_TYPES.get(model_type or "", "llama")]
    if thinking or (thinking is None and chat_template and "<think>" in chat_template):
        r1 = FAMILIES["deepseek-r1"]
        return Family(base.name, r1.think_open, r1.think_close, tuple(dict.fromkeys(base.end_of_turn + r1.end_of_turn)))
    return base
