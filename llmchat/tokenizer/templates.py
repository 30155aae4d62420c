"""Chat templates, rendered the way transformers renders them — without importing transformers.

A chat template is untrusted code from the model repo. Like transformers'
`_compile_jinja_template`, we run it in jinja2's ImmutableSandboxedEnvironment with trim_blocks
and lstrip_blocks, the loopcontrols extension, a `{% generation %}` block, a `tojson` filter that
does not HTML-escape, and the globals `raise_exception`, `strftime_now`, `dict` and `namespace`
(one that refuses underscore names). The template also sees bos_token, eos_token, … from
tokenizer_config.json, `tools`, `documents` and `add_generation_prompt`. Any failure of the
template becomes `ModelRejected("chat template rejected: …")` (exit 4).

jinja2 is imported on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import ModelRejected, UsageError
from ..hf_folder import folder_special_names, read_json
from ..signals import time_limit

# Older names of a message's reasoning; transformers copies them to `reasoning_content` (and `thinking`).
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


TEMPLATE_SECONDS = 5.0  # a template that renders longer is rejected (it loops for ever)


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template and the special-token values it sees besides the messages.

    `origin` says where the template came from (a file path, or "FOLDER/tokenizer_config.json").
    """

    source: str
    origin: str
    special_tokens: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any) -> str:
        """The prompt text for `messages` (dicts with role and content), as the model receives it."""
        compiled = compile_template(self.source, self.origin)
        variables = {**self.special_tokens, **kwargs}
        variables.setdefault("tools", None)
        variables.setdefault("documents", None)
        try:
            with time_limit(TEMPLATE_SECONDS):
                return compiled.render(messages=_prepare(messages), add_generation_prompt=add_generation_prompt,
                                       **variables)
        except Exception as exc:  # raise_exception(), SecurityError, UndefinedError, or a TypeError inside the template
            raise ModelRejected(f"chat template rejected: {_describe(exc)}",
                                f"the template from {self.origin} failed on these messages") from None

    def generation_prompt_start(self, messages: list[dict[str, Any]]) -> int | None:
        """Where the generation prompt (e.g. "<|im_start|>assistant\\n") begins in render(messages).

        None when the template adds nothing for it, or does not add it as a plain suffix.
        """
        full = self.render(messages, add_generation_prompt=True)
        bare = self.render(messages, add_generation_prompt=False)
        return len(bare) if len(full) > len(bare) and full.startswith(bare) else None


def find_template(folder: Path, spec=None) -> tuple[str, str] | None:
    """(template text, origin) for a model: the spec's own file, else chat_template.jinja, else
    chat_template.json, else tokenizer_config.json `chat_template` (its "default" when it lists
    several). None when the model has no template."""
    if spec is not None and getattr(spec, "chat_template", None):
        path = Path(spec.chat_template)
        return _read(path, "fix `chat_template` in models.toml"), str(path)
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return _read(jinja, "the model folder is corrupt"), str(jinja)
    for name in ("chat_template.json", "tokenizer_config.json"):
        template = _named_template(read_json(folder / name).get("chat_template"))
        if template is not None:
            return template, str(folder / name)
    return None


def load_template(folder: Path, spec=None, names: Mapping[str, str] | None = None) -> ChatTemplate:
    """The model's chat template, compiled (a syntax error is ModelRejected, exit 4).

    A model without a template (a base model) is ModelRejected too, as in `prompt.build`.
    """
    found = find_template(folder, spec)
    if found is None:
        name = getattr(spec, "alias", None) or Path(folder).name
        raise ModelRejected(f"{name} has no chat template (a base model?)",
                            "tokenize plain text instead, or set chat_template = \"FILE.jinja\" in models.toml")
    source, origin = found
    compile_template(source, origin)
    names = folder_special_names(Path(folder)) if names is None else names  # (a caller that read them passes them)
    return ChatTemplate(source=source, origin=origin, special_tokens=MappingProxyType(names))


def parse_messages(data: Any, where: str) -> list[dict[str, Any]]:
    """Check a conversation read from JSON: a non-empty list of {"role": str, "content": str, …}.

    Errors are UsageError naming `where` (a file path) and the message index.
    """
    if not isinstance(data, list):
        raise UsageError(f"{where}: expected a JSON list of messages, got {type(data).__name__}",
                         'write [{"role": "user", "content": "…"}, …]')
    if not data:
        raise UsageError(f"{where}: the list of messages is empty", "give at least one message")
    for number, message in enumerate(data):
        if not isinstance(message, dict):
            raise UsageError(f"{where}: message {number} is not an object", 'each message is {"role": …, "content": …}')
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                raise UsageError(f"{where}: message {number} has no {key!r} string",
                                 'each message is {"role": …, "content": …}')
    return data


def _read(path: Path, hint: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ModelRejected(f"cannot read chat template {path}: {reason}", hint) from None


def _named_template(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # chat_template.json
        return _named_template(value.get("chat_template"))
    if isinstance(value, list):  # [{"name": "default", "template": …}, {"name": "tool_use", …}]
        named = {item.get("name"): item.get("template") for item in value if isinstance(item, dict)}
        template = named.get("default")
        return template if isinstance(template, str) else None
    return None


def _prepare(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What transformers does before rendering: drop None values, copy reasoning to the names templates read."""
    prepared = []
    for message in messages:
        message = {key: value for key, value in message.items() if value is not None}
        reasoning = next((message[key] for key in _REASONING_FIELDS if message.get(key) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        prepared.append(message)
    return prepared


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    line = getattr(exc, "lineno", None)
    return f"{text} (line {line})" if line else text


@lru_cache(maxsize=16)
def compile_template(source: str, origin: str):
    import jinja2

    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ModelRejected(f"chat template rejected: syntax error at line {exc.lineno}: {exc.message}",
                            f"fix the template in {origin}") from None
    except jinja2.TemplateError as exc:  # e.g. SecurityError while compiling
        raise ModelRejected(f"chat template rejected: {_describe(exc)}", f"fix the template in {origin}") from None


@lru_cache(maxsize=1)
def _environment():
    """The sandbox, with the globals and filters transformers gives templates."""
    from datetime import datetime

    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        # `{% generation %}…{% endgeneration %}` marks assistant text for training masks; here it
        # only renders its body (transformers' AssistantTracker does the same when not tracking).
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class TemplateDict:
        # `dict(...)` without exposing the dict type itself to the template.
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        # Underscore names could reach CPython internals through attribute access.
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} starts with an underscore")

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # jinja's own tojson HTML-escapes <, > and &, which would change the prompt.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env
