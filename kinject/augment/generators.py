"""The writers of augmentation's text, behind one ``ChatGenerator`` interface: the run's base model (batched,
offline) or a TGI/OpenAI-compatible endpoint (a stronger teacher)."""

from __future__ import annotations

from typing import Any, Protocol

from ..runtime.errors import KinjectError
from ..runtime.progress import Progress
from ..settings.stages import GenerationConfig


class AugmentError(KinjectError, RuntimeError):
    """Augmentation cannot run; the message says why."""


class ChatGenerator(Protocol):
    """Writes chat answers to many conversations at once."""

    name: str

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]: ...


class LocalGenerator:
    """A loaded model and tokenizer: batched, left-padded generation (kinject.models.generate)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, progress: Progress | None = None):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.progress = progress or Progress()
        self.name = "base"

    def chat_with_ends(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[tuple[str, bool]]:
        """Each answer and whether it ended (an end of turn) before ``max_new_tokens``."""
        from ..models.generate import chat_prompt_ids, generate_batch

        ids = [chat_prompt_ids(self.tokenizer, c) for c in conversations]
        gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=0.95)
        out = generate_batch(self.model, self.tokenizer, ids, gen, self.batch_size, seed, self.progress)
        return [(self.tokenizer.decode(new, skip_special_tokens=True).strip(), ended) for new, ended in out]

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        return [text for text, _ in self.chat_with_ends(conversations, max_new_tokens, temperature, seed)]


class EndpointGenerator:
    """A TGI, vLLM or SGLang server through its OpenAI-style ``/v1/chat/completions``, several requests at once.

    Requests go through the one client for such servers (``kinject.models.client.ServerClient.reply``: a seed
    per request, the server's key, never the HF token).
    """

    def __init__(self, url: str, model: str | None = None, progress: Progress | None = None, workers: int = 4):
        from ..models.client import ServerClient

        self.client = ServerClient(url, timeout_s=120)
        self.model, self.workers = model, workers
        self.progress = progress or Progress()
        self.name = url

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        def one(i: int) -> str:
            if self.progress.should_stop():
                raise InterruptedError("generation stopped by the user")
            reply = self.client.reply(conversations[i], self.model, max_new_tokens, temperature, seed + i)
            self.progress.advance(1)
            return reply.strip()

        try:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                return list(pool.map(one, range(len(conversations))))
        except InterruptedError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the client raises, the user needs the endpoint named
            raise AugmentError(f"generator endpoint {self.name} failed: {type(exc).__name__}: {exc}") from exc
