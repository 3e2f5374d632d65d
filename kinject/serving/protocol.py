"""TGI's request bodies (its ``openapi.json`` is the contract, in ``tests/data/tgi/``), their limits, and the
response shapes the routes send.

Bodies are pydantic models built lazily (importing kinject must not import FastAPI). Every string a client sends
must be valid Unicode (a lone surrogate such as ``\\ud800`` is refused, not handed to the tokenizer), every number
fits the width TGI gives it, and a stop sequence is at most ``MAX_STOP_CHARS`` long.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from .engine import Generation, Params, ServeError, TokenOut

MAX_STOPS = 4  # TGI's default --max-stop-sequences
MAX_STOP_CHARS = 256  # a stop longer than this is a mistake or an attack, never a sentence end
MAX_PROMPTS = 4  # TGI's default --max-client-batch-size (/v1/completions' list of prompts)
INT32 = 2**31 - 1
UINT64 = 2**64 - 1  # TGI's seed is a u64; torch.manual_seed takes the same range


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"is not valid Unicode (a lone surrogate at character {exc.start})") from None
    return value


def _valid_stops(stops: list[str] | str | None) -> list[str] | str | None:
    for stop in [stops] if isinstance(stops, str) else stops or []:
        if not stop:
            raise ValueError("a stop sequence cannot be empty")
        if len(stop) > MAX_STOP_CHARS:
            raise ValueError(f"a stop sequence has at most {MAX_STOP_CHARS} characters, got {len(stop)}")
    return stops


@functools.cache
def models() -> Any:
    """TGI's request bodies as pydantic models, in a namespace: Generate, Chat, Completion, Tokenize, AddAdapter."""
    from types import SimpleNamespace
    from typing import Annotated

    from pydantic import AfterValidator, BaseModel, ConfigDict, Field

    Text = Annotated[str, AfterValidator(_valid_unicode)]
    Stops = Annotated[list[Text], Field(max_length=MAX_STOPS), AfterValidator(_valid_stops)]
    Seed = Annotated[int | None, Field(ge=0, le=UINT64)]
    Count = Annotated[int | None, Field(gt=0, le=INT32)]

    class Body(BaseModel):
        model_config = ConfigDict(extra="ignore")

    class GenerateParameters(Body):
        adapter_id: Text | None = None
        best_of: Count = None
        decoder_input_details: bool = False
        details: bool = False
        do_sample: bool = False
        frequency_penalty: float | None = Field(None, ge=-2, le=2)
        grammar: Any = None
        max_new_tokens: Count = None
        repetition_penalty: float | None = Field(None, gt=0)
        return_full_text: bool | None = None
        seed: Seed = None
        stop: Stops = Field(default_factory=list)
        temperature: float | None = Field(None, gt=0)
        top_k: Count = None
        top_n_tokens: int | None = Field(None, ge=0, le=INT32)
        top_p: float | None = Field(None, gt=0, lt=1)
        truncate: int | None = Field(None, ge=0, le=INT32)
        typical_p: float | None = Field(None, gt=0, lt=1)
        watermark: bool = False

    class Generate(Body):
        inputs: Text
        parameters: GenerateParameters = Field(default_factory=GenerateParameters)
        stream: bool = False

    class Tokenize(Body):
        """``/tokenize`` reads only ``inputs`` (and the adapter, for its tokenizer), as TGI does."""

        inputs: Text
        parameters: dict[str, Any] = Field(default_factory=dict)

    class Chunk(Body):
        type: str
        text: Text | None = None

    class Message(Body):
        role: Text
        content: Text | list[Chunk] | None = None
        name: Text | None = None

    class StreamOptions(Body):
        include_usage: bool = False

    class Sampling(Body):
        """What the OpenAI-style routes share."""

        model: Text | None = None
        max_tokens: Count = None
        temperature: float | None = Field(None, ge=0)
        top_p: float | None = Field(None, gt=0, le=1)
        seed: Seed = None
        stop: Annotated[list[Text] | Text | None, AfterValidator(_valid_stops)] = None
        frequency_penalty: float | None = Field(None, ge=-2, le=2)
        presence_penalty: float | None = Field(None, ge=-2, le=2)
        repetition_penalty: float | None = Field(None, gt=0)
        stream: bool = False
        stream_options: StreamOptions | None = None

    class Chat(Sampling):
        messages: list[Message] = Field(min_length=1)
        max_completion_tokens: Count = None
        logprobs: bool | None = None
        top_logprobs: int | None = Field(None, ge=0, le=5)

    class ChatTokenize(Body):
        """``/chat_tokenize`` reads only the conversation (and the model, for its template)."""

        messages: list[Message] = Field(default_factory=list)
        model: Text | None = None

    class Completion(Sampling):
        prompt: list[Text] | Text
        suffix: Text | None = None

    class AddAdapter(Body):
        name: Text = Field(min_length=1)
        path: Text = Field(min_length=1)

    return SimpleNamespace(
        Generate=Generate,
        Tokenize=Tokenize,
        Chat=Chat,
        ChatTokenize=ChatTokenize,
        Completion=Completion,
        AddAdapter=AddAdapter,
    )


# ------------------------------------------------------------------------------------------- request -> Params


def generate_params(p: Any, default_max: int) -> Params:
    """``/generate``'s parameters as the engine's."""
    if p.best_of not in (None, 1):
        raise ServeError("`best_of` != 1 is not supported by kinject's server")
    return Params(
        max_new_tokens=p.max_new_tokens or default_max,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        repetition_penalty=p.repetition_penalty,
        do_sample=p.do_sample,
        seed=p.seed,
        stop=list(p.stop),
    )


def openai_params(r: Any, default_max: int) -> Params:
    """The chat and completions routes' settings as the engine's."""
    stop = [r.stop] if isinstance(r.stop, str) else list(r.stop or [])
    if len(stop) > MAX_STOPS:
        raise ServeError(f"`stop` supports up to {MAX_STOPS} stop sequences. Given: {len(stop)}")
    top_p = r.top_p if r.top_p is not None and r.top_p < 1 else None  # OpenAI's 1.0 means "no nucleus cut"
    penalty = r.repetition_penalty
    if penalty is None and r.presence_penalty is not None:
        penalty = r.presence_penalty + 2 if r.presence_penalty > -2 else None
    max_tokens = r.max_tokens or getattr(r, "max_completion_tokens", None) or default_max
    return Params(
        max_new_tokens=max_tokens,
        temperature=r.temperature,
        top_p=top_p,
        repetition_penalty=penalty,
        seed=r.seed,
        stop=stop,
    )


def chat_messages(r: Any) -> list[dict[str, str]]:
    """The conversation as plain role/content pairs (text parts joined; other parts, such as images, dropped)."""
    out = []
    for m in r.messages:
        content = m.content
        if isinstance(content, list):
            content = "".join(c.text or "" for c in content if c.type == "text")
        out.append({"role": m.role, "content": content or ""})
    return out


def prompts(r: Any) -> list[str]:
    """``/v1/completions``' prompts (a string or a list of up to ``MAX_PROMPTS``)."""
    if r.suffix:
        raise ServeError("`suffix` is not supported by kinject's server")
    items = [r.prompt] if isinstance(r.prompt, str) else list(r.prompt)
    if not items:
        raise ServeError("`prompt` cannot be empty")
    if len(items) > MAX_PROMPTS:
        raise ServeError(f"Number of prompts exceeds the maximum allowed batch size of {MAX_PROMPTS}")
    return items


# ---------------------------------------------------------------------------------------------- response shapes


def token(t: TokenOut) -> dict[str, Any]:
    return {"id": t.id, "text": t.text, "logprob": t.logprob, "special": t.special}


def generate_details(g: Generation) -> dict[str, Any]:
    return {
        "finish_reason": g.finish_reason,
        "generated_tokens": len(g.tokens),
        "seed": g.seed,
        "prefill": [],
        "tokens": [token(t) for t in g.tokens],
    }


def stream_details(g: Generation) -> dict[str, Any]:
    return {
        "finish_reason": g.finish_reason,
        "generated_tokens": len(g.tokens),
        "input_length": g.input_length,
        "seed": g.seed,
    }


def openai_finish(reason: str) -> str:
    return "stop" if reason in ("eos_token", "stop_sequence") else reason


def usage(g: Generation | list[Generation]) -> dict[str, int]:
    gens = g if isinstance(g, list) else [g]
    prompt = sum(x.input_length for x in gens)
    completion = sum(len(x.tokens) for x in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(data: Any) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
