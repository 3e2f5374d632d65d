"""TGI's request bodies as pydantic models (its ``openapi.json`` is the contract, in ``tests/data/tgi/``): Generate,
Chat, Completion, Tokenize, ChatTokenize, and kinject's AddAdapter.

A body nests arrays and objects at most ``MAX_JSON_DEPTH`` deep, every string a client sends must be valid Unicode
(a lone surrogate such as ``\\ud800`` is refused, not handed to the tokenizer), every number fits the width TGI gives
it, and a stop sequence is at most ``MAX_STOP_CHARS`` long. Only the routes import this module (and parse bodies
with it off the event loop), so importing kinject does not import pydantic's models or FastAPI.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .errors import ServeError
from .protocol import INT32, MAX_STOP_CHARS, MAX_STOPS, UINT64

MAX_JSON_DEPTH = 128  # arrays and objects nested in a body, at most: serde_json's limit, so TGI's parser's


def load_json(raw: bytes) -> Any:
    """A request body as JSON; bytes that are not JSON, not UTF-8 or nested deeper than ``MAX_JSON_DEPTH`` are TGI's
    422 (the depth is bounded so that no parser or validator behind recurses past Python's stack)."""
    try:
        value = json.loads(raw)
        too_deep = _deeper_than(value, MAX_JSON_DEPTH)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServeError(f"Input validation error: the body is not valid JSON: {exc}") from None
    except RecursionError:  # nested deeper than the decoder goes, so deeper than the limit too
        too_deep = True
    if too_deep:
        raise ServeError(f"Input validation error: the body nests arrays and objects more than {MAX_JSON_DEPTH} deep")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest in ``value`` more than ``limit`` deep (a walk without recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse(raw: bytes, model: type[BaseModel]) -> Any:
    """A request body as the pydantic ``model``; a wrong field raises pydantic's ``ValidationError`` (TGI's 422)."""
    return model.model_validate(load_json(raw))


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
    # Read only to refuse a value the server would otherwise ignore (``protocol.check_chat_fields`` and
    # ``check_completion_fields``).
    n: int | None = Field(None, ge=0, le=INT32)
    logit_bias: Any = None


class Chat(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Count = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=5)
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: Any = None


class ChatTokenize(Body):
    """``/chat_tokenize`` reads only the conversation (and the model, for its template)."""

    messages: list[Message] = Field(default_factory=list)
    model: Text | None = None


class Completion(Sampling):
    prompt: list[Text] | Text
    suffix: Text | None = None
    best_of: int | None = Field(None, ge=0, le=INT32)
    logprobs: Any = None
    echo: bool = False


class AddAdapter(Body):
    name: Text = Field(min_length=1)
    path: Text = Field(min_length=1)
