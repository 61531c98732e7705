"""Chat templates: read them from a tokenizer directory and render conversations as transformers does
(``apply_chat_template``): Jinja2 (imported on first use) in an ``ImmutableSandboxedEnvironment`` with
``trim_blocks`` / ``lstrip_blocks``, the ``loopcontrols`` extension, transformers' ``tojson`` filter and
its ``raise_exception`` / ``strftime_now`` globals; ``{% generation %}`` blocks render their body."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np

from isoform.errors import TokenizerError

FILE = "chat_template.jinja"  # takes priority over tokenizer_config.json's "chat_template", as in transformers
CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # transformers' marker for continue_final_message


def load(directory: pathlib.Path, config: Mapping[str, Any]) -> str | dict[str, str] | None:
    """The chat template(s) of a tokenizer directory: ``chat_template.jinja``, else ``chat_template`` of
    ``tokenizer_config.json`` (a string, or a list of ``{"name", "template"}``: a dict by name)."""
    path = directory / FILE
    if path.is_file():
        return path.read_text(encoding="utf-8")
    value = config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(t, dict) and {"name", "template"} <= t.keys() for t in value):
        return {t["name"]: t["template"] for t in value}
    raise TokenizerError(f"tokenizer_config.json: chat_template must be a string or a list of "
                         f"{{'name': ..., 'template': ...}}, got {value!r:.80}")


def select(templates: str | dict[str, str] | None, chat_template: str | None, tools: Any) -> str:
    """transformers' ``get_chat_template``: the template to render (a name picks one of several)."""
    if isinstance(templates, dict):
        if chat_template is not None:
            return templates.get(chat_template, chat_template)
        if tools is not None and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise TokenizerError(f"this tokenizer has several chat templates and none is 'default': pass "
                             f"chat_template= one of {sorted(templates)}")
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise TokenizerError("this tokenizer has no chat template (no chat_template.jinja, no chat_template in "
                             "tokenizer_config.json): pass chat_template=, or set tok.chat_template")
    return templates


def render(template: str, conversation: Any, *, add_generation_prompt: bool, continue_final_message: bool,
           variables: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The rendered text of each conversation, and whether ``conversation`` was a batch of them."""
    if isinstance(conversation, list | tuple) and not conversation:
        raise TokenizerError("apply_chat_template needs at least one message")
    batched = isinstance(conversation, list | tuple) and isinstance(conversation[0], list | tuple)
    if continue_final_message and add_generation_prompt:
        raise TokenizerError("continue_final_message and add_generation_prompt do not combine: the first continues "
                             "the last message, the second starts a new assistant message")
    compiled, out = _compile(template), []
    for chat in conversation if batched else [conversation]:
        if not isinstance(chat, list | tuple) or not all(isinstance(m, Mapping) for m in chat):
            raise TokenizerError(f"a conversation must be a list of message dicts, got {chat!r:.80}")
        messages = [{k: v for k, v in _plain(m).items() if v is not None} for m in chat]
        final = None
        if continue_final_message:
            final = messages[-1].get("content") if messages else None
            if not isinstance(final, str):
                raise TokenizerError("continue_final_message needs a final message with text content")
            messages[-1]["content"] = final + CONTINUE_TAG
        text = _run(compiled, messages=messages, add_generation_prompt=add_generation_prompt, **_plain(dict(variables)))
        if final is not None:
            tag = CONTINUE_TAG.strip()
            if final.strip() not in text or tag not in text:
                raise TokenizerError("continue_final_message: the chat template dropped part of the final message")
            at = text.rindex(tag)
            text = text[:at] if text[at:at + len(CONTINUE_TAG)] == CONTINUE_TAG else text[:at].rstrip()
        out.append(text)
    return out, batched


def _run(compiled: Any, **variables: Any) -> str:
    import jinja2

    try:
        return compiled.render(**variables)
    except jinja2.TemplateError as e:
        raise TokenizerError(f"chat template error: {e}") from None


def _plain(value: Any) -> Any:
    """Plain JSON data for the template (as transformers' ``_plain_template_data``): other objects become
    a ``<type>`` placeholder, so the sandbox never sees their methods."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, np.generic):
        return _plain(value.item())
    for kind in (str, bool, int, float):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return f"<{type(value).__name__}>"


@cache
def _compile(template: str) -> Any:
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """``{% generation %}...{% endgeneration %}`` (assistant-mask markers) renders its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise TokenizerError(f"chat template does not parse (line {e.lineno}): {e.message}") from None
