"""Configuration: one documented dataclass per stage, validated on construction.

The CLI and the UI build these same objects; ``RunConfig`` gathers them and is written to ``config.yaml`` in the
run folder (never with secrets: the HF token is read from the environment or the UI and kept in memory only).
Each field's ``help`` metadata is the text the CLI shows.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - "help" mirrors argparse
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


def _require(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field_name}: {message}")


DEFAULT_USER_AGENT = "kinject/0.1 (knowledge-injection corpus builder; +https://github.com/kinject/kinject)"


@dataclass
class FetchConfig:
    """How sources are fetched (stage: sources)."""

    timeout_s: float = _f(20.0, "Seconds to wait for connect and for each read before giving up on a URL.")
    total_timeout_s: float = _f(60.0, "Most seconds for one page's whole download (a server trickling bytes is cut).")
    max_bytes: int = _f(5_000_000, "Largest page body read, in bytes; a longer page is refused, not truncated.")
    max_concurrency: int = _f(4, "Requests in flight at once.")
    max_redirects: int = _f(5, "Redirects followed per URL.")
    user_agent: str = _f(DEFAULT_USER_AGENT, "User-Agent header sent with every request.")
    allow_private_urls: bool = _f(
        False,
        "Allow URLs that resolve to loopback, private, link-local, multicast or reserved addresses "
        "(off by default: the server fetches what users paste, so internal addresses are refused).",
    )
    allowed_networks: list[str] = _f(
        [], "Address ranges (CIDR) allowed even when private, e.g. an intranet wiki at 10.1.2.0/24."
    )

    def __post_init__(self) -> None:
        _require(self.timeout_s > 0, "timeout_s", f"must be > 0, got {self.timeout_s}")
        _require(self.total_timeout_s > 0, "total_timeout_s", f"must be > 0, got {self.total_timeout_s}")
        _require(self.max_bytes > 0, "max_bytes", f"must be > 0, got {self.max_bytes}")
        _require(self.max_concurrency >= 1, "max_concurrency", f"must be >= 1, got {self.max_concurrency}")
        _require(0 <= self.max_redirects <= 20, "max_redirects", f"must be within 0..20, got {self.max_redirects}")
        for net in self.allowed_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"allowed_networks: {net!r} is not a CIDR range ({exc})") from None


@dataclass
class CorpusConfig:
    """How extracted text becomes the training corpus (stage: corpus)."""

    dedup_documents: bool = _f(True, "Drop documents whose cleaned text equals an earlier one.")
    dedup_paragraphs: bool = _f(
        True, "Drop paragraphs that repeat across different documents (site chrome that survived extraction)."
    )
    min_document_chars: int = _f(
        40, "A source whose cleaned text is shorter than this is reported as an error and left out."
    )

    def __post_init__(self) -> None:
        _require(self.min_document_chars >= 1, "min_document_chars", "must be >= 1")


@dataclass
class BlocksConfig:
    """How the corpus is tokenized and packed (stage: blocks)."""

    block_size: int = _f(2048, "Tokens per training block; capped at the model's context length.")
    pad_last: bool = _f(
        False, "Pad the last, shorter block to block_size (padding masked with -100) instead of keeping it short."
    )

    def __post_init__(self) -> None:
        _require(self.block_size >= 16, "block_size", f"must be >= 16, got {self.block_size}")


@dataclass
class ModelConfig:
    """Which model to train on (stage: models)."""

    model: str = _f(
        "smollm2-135m-instruct",
        "The bundled SmolLM2-135M-Instruct ('smollm2-135m-instruct'), a local model folder, or a Hub id "
        "(gated models read HF_TOKEN).",
    )
    revision: str | None = _f(None, "Hub revision (branch, tag or commit) for a Hub id.")

    def __post_init__(self) -> None:
        _require(bool(self.model and self.model.strip()), "model", "must not be empty")


@dataclass
class GenerationConfig:
    """Decoding settings shared by `ask`, evaluation and the chat (TGI's defaults in the case study)."""

    max_new_tokens: int = _f(200, "Most tokens generated per answer.")
    temperature: float = _f(0.01, "Sampling temperature; at or below 0.05 decoding is greedy.")
    top_p: float = _f(0.9, "Nucleus sampling mass (ignored when greedy).")
    repetition_penalty: float = _f(1.0, "Penalty for repeated tokens (1.0 = none).")

    def __post_init__(self) -> None:
        _require(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        _require(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        _require(0 < self.top_p <= 1, "top_p", f"must be within (0, 1], got {self.top_p}")
        _require(self.repetition_penalty > 0, "repetition_penalty", "must be > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.05


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain data (for YAML/JSON)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type, data: dict[str, Any] | None) -> Any:
    """Build ``cls`` from a mapping, naming any unknown key (a typo in config.yaml must not pass silently)."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    return cls(**data)


def field_help(cls: type, name: str) -> str:
    """The documented help text of one field (used for CLI and UI help)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


@dataclass
class PrepareConfig:
    """Everything `prepare` needs: the inputs plus the settings of each stage it runs."""

    urls: list[str] = _f([], "Web pages to fetch (http or https).")
    files: list[str] = _f([], "Local files: .html, .htm, .txt, .md, .pdf.")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Model whose tokenizer packs."})
    fetch: FetchConfig = field(default_factory=FetchConfig, metadata={"help": "Fetching limits and guard."})
    corpus: CorpusConfig = field(default_factory=CorpusConfig, metadata={"help": "Cleaning and dedup."})
    blocks: BlocksConfig = field(default_factory=BlocksConfig, metadata={"help": "Tokenizing and packing."})

    def __post_init__(self) -> None:
        self.urls = [u.strip() for u in self.urls if u and u.strip()]
        self.files = [f.strip() for f in self.files if f and f.strip()]
        _require(bool(self.urls or self.files), "urls", "give at least one URL or file")


# Presets: named sets of TrainConfig values. Every value can still be overridden field by field.
PRESETS: dict[str, dict[str, Any]] = {
    # The recipe of the case study this project follows (LLaMA2-13b-chat, AWS Summit NYC 2023 pages).
    "case-study": {
        "lora_r": 64,
        "lora_alpha": 16,
        "lora_dropout": 0.1,
        "learning_rate": 2e-4,
        "epochs": 20,
        "batch_size": 2,
        "block_size": 2048,
    },
    # Minutes on 2 CPU cores for one page on the bundled 135M model, and visibly injects its facts.
    "cpu-demo": {
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "learning_rate": 1e-3,
        "epochs": 20,
        "batch_size": 1,
        "block_size": 512,
    },
    # Chosen by measurement (bench/knowledge_sweep.py, README training section): of the settings measured on the
    # six sample pages, the most knowledge-probe accuracy with the least retention lost (1/8 facts, 6/8 retention).
    "knowledge": {
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "learning_rate": 1e-3,
        "epochs": 15,
        "batch_size": 1,
        "block_size": 512,
        "text_format": "raw",
    },
}
DEFAULT_PRESET = "knowledge"


@dataclass
class TrainConfig:
    """LoRA / QLoRA training of a run's blocks (stage: train). ``preset`` fills the fields left as None."""

    preset: str = _f(DEFAULT_PRESET, f"Named set of values: {', '.join(PRESETS)}.")
    epochs: float | None = _f(None, "Passes over the blocks.")
    max_steps: int | None = _f(None, "Stop after this many optimizer steps (overrides epochs when set).")
    learning_rate: float | None = _f(None, "Peak learning rate of the LoRA weights.")
    lora_r: int | None = _f(None, "LoRA rank.")
    lora_alpha: int | None = _f(None, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float | None = _f(None, "Dropout on the LoRA input.")
    batch_size: int | None = _f(None, "Blocks per optimizer step (per device).")
    block_size: int | None = _f(None, "Training block size; a run prepared with another is repacked.")
    text_format: str | None = _f(
        None,
        "How documents are trained on: 'raw' text, 'chat' (each page as a chat answer about its title) or 'both'.",
    )
    gradient_accumulation: int = _f(1, "Micro-batches accumulated per optimizer step.")
    target_modules: str = _f("all-linear", "Layers that get LoRA: 'all-linear' or a comma-separated list of names.")
    quantization: str = _f("auto", "'4bit' (QLoRA nf4 + double quant), 'none', or 'auto' (4bit on CUDA, none on CPU).")
    gradient_checkpointing: str = _f("auto", "'on', 'off' or 'auto' (on with CUDA, off on CPU where it only slows).")
    warmup_ratio: float = _f(0.1, "Share of steps with linearly rising learning rate.")
    lr_scheduler: str = _f("constant_with_warmup", "Scheduler: constant_with_warmup, cosine, linear.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    save_steps: int = _f(50, "Write a resumable checkpoint every N steps.")
    seed: int = _f(42, "Seed for LoRA init and data order.")
    eval_at_end: bool = _f(False, "Evaluate base vs adapter when training ends (the app turns it on).")

    def __post_init__(self) -> None:
        _require(self.preset in PRESETS, "preset", f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        _require(self.epochs is not None and self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        _require(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        _require(0 < self.learning_rate < 1, "learning_rate", f"must be within (0, 1), got {self.learning_rate}")
        _require(self.lora_r >= 1, "lora_r", f"must be >= 1, got {self.lora_r}")
        _require(self.lora_alpha >= 1, "lora_alpha", f"must be >= 1, got {self.lora_alpha}")
        _require(0 <= self.lora_dropout < 1, "lora_dropout", f"must be within [0, 1), got {self.lora_dropout}")
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.gradient_accumulation >= 1, "gradient_accumulation", "must be >= 1")
        _require(self.block_size is None or self.block_size >= 16, "block_size", "must be >= 16")
        self.text_format = self.text_format or "raw"
        _require(self.text_format in ("raw", "chat", "both"), "text_format", "must be raw, chat or both")
        _require(self.quantization in ("auto", "4bit", "none"), "quantization", "must be auto, 4bit or none")
        _require(self.gradient_checkpointing in ("auto", "on", "off"), "gradient_checkpointing", "auto, on or off")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be within [0, 1)")
        _require(self.save_steps >= 1, "save_steps", f"must be >= 1, got {self.save_steps}")


@dataclass
class EvalConfig:
    """Base-vs-adapter evaluation (stage: evaluate)."""

    probes: str | None = _f(
        None, "Probe file (JSONL: id, kind knowledge|retention, question, prompt, answers); None: automatic probes."
    )
    auto_probes: int = _f(8, "Knowledge probes generated from the corpus when no probe file is given (0: none).")
    retention: bool = _f(True, "Add kinject's shipped retention probes (general knowledge and chat behaviour).")
    forgetting: bool = _f(True, "Measure KL divergence and perplexity ratio on kinject's shipped general data.")
    kl_max_new_tokens: int = _f(
        64, "Tokens of the base model's own greedy answer to each general prompt over which KL is measured."
    )
    generation: GenerationConfig = field(
        default_factory=GenerationConfig, metadata={"help": "Decoding for probe answers."}
    )

    def __post_init__(self) -> None:
        _require(self.auto_probes >= 0, "auto_probes", f"must be >= 0, got {self.auto_probes}")
        _require(self.kl_max_new_tokens >= 1, "kl_max_new_tokens", f"must be >= 1, got {self.kl_max_new_tokens}")
        if isinstance(self.generation, dict):
            self.generation = GenerationConfig(**self.generation)
