"""The Ollama ``Modelfile`` beside an exported GGUF file: FROM the file (and ADAPTER the LoRA adapter's file when it
goes over a base), a TEMPLATE that renders the chat format the
model's own chat template renders, its stop tokens, and kinject's generation settings as PARAMETERs.

The format is told by rendering the tokenizer's chat template, not by reading it: kinject writes a TEMPLATE only for
the ChatML format (``<|im_start|>role\\ncontent<|im_end|>\\n``, SmolLM2's, Qwen's), with the system message the
template puts first when a conversation has none as the Modelfile's SYSTEM (Ollama puts SYSTEM first in that case
too). For any other template the Modelfile says so in a comment and has no TEMPLATE, rather than a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..runs import RunDir
from ..settings.stages import GenerationConfig
from .gguf_tensors import ExportError

START, END = "<|im_start|>", "<|im_end|>"
# Ollama's Go template for ChatML: every message, then the assistant's turn to answer.
CHATML_TEMPLATE = (
    f"{{{{ range .Messages }}}}{START}{{{{ .Role }}}}\n{{{{ .Content }}}}{END}\n{{{{ end }}}}{START}assistant\n"
)
_PROBE = ("Which port does the service use?", "Port 8080.", "And the host?")


@dataclass
class ChatFormat:
    """A chat format kinject can write as an Ollama TEMPLATE."""

    template: str  # Ollama's Go template
    system: str | None  # the system message the chat template puts first when a conversation has none
    stops: list[str]


def chatml(role: str, content: str) -> str:
    """One ChatML message as the template renders it."""
    return f"{START}{role}\n{content}{END}\n"


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - no template, or one that refuses these messages: an unknown format
        return None


def chat_format(tokenizer: Any) -> ChatFormat | None:
    """The tokenizer's chat format when it is ChatML (told by rendering a conversation with and without a system
    message), else None."""
    roles = ("user", "assistant", "user")
    turns = [{"role": r, "content": c} for r, c in zip(roles, _PROBE, strict=True)]
    body = "".join(chatml(m["role"], m["content"]) for m in turns) + f"{START}assistant\n"
    with_system = _render(tokenizer, [{"role": "system", "content": "Be brief."}, *turns])
    if with_system != chatml("system", "Be brief.") + body:
        return None
    without = _render(tokenizer, turns)
    if without is None or not without.endswith(body):
        return None
    prefix = without[: len(without) - len(body)]
    system = None
    if prefix:
        found = re.fullmatch(re.escape(f"{START}system\n") + r"(.*)" + re.escape(f"{END}\n"), prefix, re.DOTALL)
        if found is None:
            return None
        system = found.group(1)
    stops = [START, END]
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos not in stops:
        stops.append(eos)
    return ChatFormat(CHATML_TEMPLATE, system, stops)


def _quoted(text: str) -> str:
    """A Modelfile string: triple-quoted when it holds a newline or a quote."""
    if '"""' in text:
        raise ExportError(f"a Modelfile value cannot hold three double quotes: {text[:60]!r}")
    return f'"""{text}"""' if "\n" in text or '"' in text else f'"{text}"'


def modelfile_text(
    gguf_file: str, tokenizer: Any, generation: GenerationConfig, name: str, adapter: str | None = None
) -> str:
    """The Modelfile of ``gguf_file`` (a name in the same folder), with the LoRA ``adapter`` (a GGUF file there too)
    over it when given: FROM, ADAPTER, TEMPLATE, SYSTEM, stops and the decoding settings of ``generation`` (greedy,
    at or below kinject's 0.05, is temperature 0)."""
    own = RunDir.export_adapter_modelfile_name() if adapter else RunDir.export_modelfile_name()
    lines = [f"# {name}, exported by kinject (`kinject export`); use: ollama create NAME -f {own}", ""]
    lines += [f"FROM ./{gguf_file}"] + ([f"ADAPTER ./{adapter}"] if adapter else []) + [""]
    found = chat_format(tokenizer)
    if found is None:
        lines += [
            "# The model's chat template is not one kinject can write as an Ollama TEMPLATE (it writes ChatML);",
            "# no TEMPLATE is given rather than a guess: add one that renders the model's chat format.",
        ]
    else:
        lines.append(f"TEMPLATE {_quoted(found.template)}")
        if found.system is not None:
            lines.append(f"SYSTEM {_quoted(found.system)}")
        lines += [f"PARAMETER stop {_quoted(stop)}" for stop in found.stops]
    temperature = 0.0 if generation.greedy else generation.temperature
    lines += [
        "",
        f"PARAMETER temperature {temperature:g}",
        f"PARAMETER top_p {generation.top_p:g}",
        f"PARAMETER num_predict {generation.max_new_tokens}",
        f"PARAMETER repeat_penalty {generation.repetition_penalty:g}",
    ]
    return "\n".join(lines) + "\n"


def ollama_name(text: str) -> str:
    """A model name Ollama accepts, from a run's name (lower case letters, digits, '-', '_' and '.')."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name or "kinject-model"
