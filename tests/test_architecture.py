"""The import rule of ARCHITECTURE.md, read from the files (no model, no import of llmchat).

Imports point down the stack only — cli → chat, serve, remote → render → engine → prompt → model →
tokenizer → config → leaves — or stay inside their own package; chat, serve and remote never import each
other. tokenizer/ and config/ never import torch or transformers; model/, tokenizer/, prompt/
and engine/ never import rich nor write to stderr (they report through callbacks and errors).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "llmchat"
LEVELS = {"leaf": 0, "config": 1, "tokenizer": 2, "model": 3, "prompt": 4, "engine": 5, "render": 6,
          "chat": 7, "serve": 7, "remote": 7, "cli": 8}
NO_TORCH = {"tokenizer", "config", "remote"}
QUIET = {"model", "tokenizer", "prompt", "engine"}


def stage(module: str) -> str:
    """'llmchat.model.cpu.llama' → 'model'; a top-level module is a leaf; an entry point
    (`python -m llmchat.serve`) is on top, with the CLI."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "cli"
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "leaf"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, function-level ones included."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            found += [(node.lineno, name) for name in names]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_stack(path):
    here = stage(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    wrong = []
    for line, target in imports(path):
        root = target.split(".")[0]
        if root == "llmchat":
            there = stage(target)
            if there != here and LEVELS[there] >= LEVELS[here]:
                wrong.append(f"line {line}: {here} imports {target} ({there} is not below {here})")
        elif here in NO_TORCH and root in ("torch", "transformers", "accelerate"):
            wrong.append(f"line {line}: {here} imports {root}")
        elif here in QUIET and root == "rich":
            wrong.append(f"line {line}: {here} imports rich")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", [p for p in SOURCES if p.relative_to(PACKAGE).parts[0] in QUIET],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_lower_stages_never_write_to_the_terminal(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    printing = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "print")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "write" and "std" in ast.unparse(node.func)))]
    assert not printing, f"print/stdout/stderr writes at lines {printing}: report through model.progress or an error"


def test_no_module_sits_flat_except_the_leaves():
    flat = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert flat == {"errors", "sanitize", "paths", "hf_folder", "prefixes", "signals"}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LEVELS) - {"leaf"}


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: an import from engine/ into render/ is reported (a check that cannot fail is none)."""
    fake = tmp_path / "llmchat" / "engine"
    fake.mkdir(parents=True)
    (tmp_path / "llmchat" / "render").mkdir()
    bad = fake / "bad.py"
    bad.write_text("def f():\n    from ..render import chat_view\n    import torch\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "llmchat")
    assert imports(bad) == [(2, "llmchat.render"), (3, "torch")]
    with pytest.raises(AssertionError, match="engine imports llmchat.render"):
        test_imports_point_down_the_stack(bad)
    (tmp_path / "llmchat" / "tokenizer").mkdir()
    heavy = tmp_path / "llmchat" / "tokenizer" / "heavy.py"
    heavy.write_text("import sys\nfrom transformers import AutoTokenizer\nprint('x', file=sys.stderr)\n")
    with pytest.raises(AssertionError, match="tokenizer imports transformers"):
        test_imports_point_down_the_stack(heavy)
    with pytest.raises(AssertionError, match="lines \\[3\\]"):
        test_the_lower_stages_never_write_to_the_terminal(heavy)
