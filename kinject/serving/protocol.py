"""TGI's protocol apart from HTTP: its limits, a request's settings as the engine's ``Params``, and the response
shapes the routes send. The request bodies themselves are pydantic models in ``bodies``."""

from __future__ import annotations

import json
from typing import Any

from .engine import Generation, Params, TokenOut
from .errors import ServeError

ROUTER = "kinject-tgi-compatible"
VERSION = "3.3.6-kinject"  # the TGI protocol version whose openapi.json the server follows

MAX_STOPS = 4  # TGI's default --max-stop-sequences
MAX_STOP_CHARS = 256  # a stop longer than this is a mistake or an attack, never a sentence end
MAX_PROMPTS = 4  # TGI's default --max-client-batch-size (/v1/completions' list of prompts)
INT32 = 2**31 - 1
UINT64 = 2**64 - 1  # TGI's seed is a u64; torch.manual_seed takes the same range


# ------------------------------------------------------------------------------------------- request -> Params


def _unless_given(value: Any, default: Any) -> Any:
    return default if value is None else value


def generate_params(p: Any, defaults: Params) -> Params:
    """``/generate``'s parameters as the engine's; what the request leaves unset is the server's (``defaults``)."""
    if p.best_of not in (None, 1):
        raise ServeError("`best_of` != 1 is not supported by kinject's server")
    return Params(
        max_new_tokens=p.max_new_tokens or defaults.max_new_tokens,
        temperature=_unless_given(p.temperature, defaults.temperature),
        top_p=_unless_given(p.top_p, defaults.top_p),
        top_k=p.top_k,
        repetition_penalty=_unless_given(p.repetition_penalty, defaults.repetition_penalty),
        do_sample=p.do_sample,
        seed=p.seed,
        stop=list(p.stop),
    )


def openai_params(r: Any, defaults: Params) -> Params:
    """The chat and completions routes' settings as the engine's; what the request leaves unset is the server's
    (``defaults``)."""
    stop = [r.stop] if isinstance(r.stop, str) else list(r.stop or [])
    if len(stop) > MAX_STOPS:
        raise ServeError(f"`stop` supports up to {MAX_STOPS} stop sequences. Given: {len(stop)}")
    if r.top_p is None:
        top_p = defaults.top_p
    else:
        top_p = r.top_p if r.top_p < 1 else None  # OpenAI's 1.0 means "no nucleus cut"
    penalty = r.repetition_penalty
    if penalty is None and r.presence_penalty is not None:
        penalty = r.presence_penalty + 2 if r.presence_penalty > -2 else None
    elif penalty is None:
        penalty = defaults.repetition_penalty
    max_tokens = r.max_tokens or getattr(r, "max_completion_tokens", None) or defaults.max_new_tokens
    return Params(
        max_new_tokens=max_tokens,
        temperature=_unless_given(r.temperature, defaults.temperature),
        top_p=top_p,
        repetition_penalty=penalty,
        seed=r.seed,
        stop=stop,
    )


def check_chat_fields(r: Any) -> None:
    """Refuse the chat fields the server would otherwise ignore: more than one choice, alternatives' log
    probabilities, tool calls, constrained output, biases and penalties it does not apply. A 422 names them all."""
    refused = _refused_sampling(r)
    if r.top_logprobs:
        refused.append(f"`top_logprobs` = {r.top_logprobs} (`logprobs` gives the chosen tokens' only)")
    if r.tools and r.tool_choice != "none":
        refused.append('`tools` (no tool calls: send `tool_choice` "none" or no tools)')
    elif r.tool_choice not in (None, "auto", "none"):
        refused.append(f"`tool_choice` = {json.dumps(r.tool_choice)[:80]} (no tool calls)")
    if r.response_format is not None:
        refused.append("`response_format` (no grammar-constrained output)")
    _refuse(refused)


def check_completion_fields(r: Any) -> None:
    """Refuse the completion fields the server would otherwise ignore (see ``check_chat_fields``)."""
    refused = _refused_sampling(r)
    if r.best_of not in (None, 1):
        refused.append(f"`best_of` = {r.best_of} (one candidate per prompt)")
    if r.logprobs is not None and r.logprobs is not False:
        refused.append(f"`logprobs` = {json.dumps(r.logprobs)[:20]} (no log probabilities on /v1/completions)")
    if r.echo:
        refused.append("`echo` (the answer never repeats the prompt)")
    _refuse(refused)


def _refused_sampling(r: Any) -> list[str]:
    refused = []
    if r.n not in (None, 1):
        refused.append(f"`n` = {r.n} (one choice per request: send 1 or leave it out)")
    if r.frequency_penalty:
        refused.append(f"`frequency_penalty` = {r.frequency_penalty} (`repetition_penalty` is applied, this is not)")
    if r.logit_bias:
        refused.append("`logit_bias`")
    return refused


def _refuse(refused: list[str]) -> None:
    if refused:
        raise ServeError("not supported by kinject's server: " + "; ".join(refused))


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


def chat_logprobs(tokens: list[TokenOut]) -> dict[str, Any]:
    """The chat's ``logprobs``: each chosen token's log probability (special tokens, not in the text, left out)."""
    return {"content": [{"token": t.text, "logprob": t.logprob, "top_logprobs": []} for t in tokens if not t.special]}


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
