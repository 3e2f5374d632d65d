"""Export a run's merged model (its adapter folded into the base, as ``merge`` folds it) for llama.cpp and Ollama:
``export/`` holds one GGUF file per type asked for (``kinject.sharing.gguf_llama``) and an Ollama ``Modelfile``
(``kinject.sharing.modelfile``).

The folder is written whole or not at all: into a temporary folder renamed into place when complete, after a check
that the disk holds the files' estimated size. A new export replaces the previous ``export/``.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import RunDir, atomic_write_text
from ..runtime.progress import Progress
from ..settings.services import ExportConfig
from ..settings.stages import GenerationConfig
from .gguf_llama import ExportError, check_architecture, estimate_bytes, write_gguf
from .merge import load_merged
from .modelfile import chat_format, modelfile_text, ollama_name

_SPARE_BYTES = 64 << 20  # beyond the estimate: the file system's own needs, a margin on the vocabulary's size


@dataclass
class ExportResult:
    """What ``export`` wrote, and the commands that use it."""

    folder: Path
    files: list[Path]  # the GGUF files, in the order of the types asked for
    modelfile: Path
    name: str  # the model's name in Ollama
    template: bool  # whether the Modelfile has a TEMPLATE (False: the chat format is not one kinject writes)
    commands: list[str] = field(default_factory=list)


def export(
    run_dir: str | Path | RunDir,
    config: ExportConfig | None = None,
    generation: GenerationConfig | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write ``run_dir/export`` atomically: the merged model as GGUF (``config.types``) and a Modelfile with the
    decoding settings of ``generation``. Holds the run's training lock (the adapter must not change meanwhile); a
    base of another architecture is refused before it is loaded."""
    import torch

    run = RunDir(run_dir)
    adapter = run.require_adapter()
    config, progress = config or ExportConfig(), progress or Progress()
    _check_base(run)
    with run.training_lock():
        progress.start("export", total=2 + len(config.types), unit="step")
        # float32: the adapter's update is folded in without rounding, and each type rounds once from there
        model, tokenizer = load_merged(run, adapter, torch.float32, progress)
        try:
            return export_model(run, model, tokenizer, config, generation or GenerationConfig(), progress)
        finally:
            progress.finish()


def _check_base(run: RunDir) -> None:
    """Refuse a base kinject cannot export, from its config alone (before minutes of loading)."""
    from transformers import AutoConfig

    from ..models.loading import resolve_model
    from ..settings.fields import from_dict
    from ..settings.stages import ModelConfig

    cfg = from_dict(ModelConfig, run.section("model"), "model")
    resolved = resolve_model(cfg.model, cfg.revision)
    check_architecture(AutoConfig.from_pretrained(resolved.path, revision=resolved.revision, token=resolved.token))


def export_model(
    run: RunDir, model: Any, tokenizer: Any, config: ExportConfig, generation: GenerationConfig, progress: Progress
) -> ExportResult:
    """Write ``model`` and ``tokenizer`` into ``run``'s ``export/`` (see ``export``), once the disk is known to hold
    them; nothing is left behind when it fails or ``progress`` asks to stop."""
    check_architecture(model.config, type(model).__name__)
    need = sum(estimate_bytes(model, qtype) for qtype in config.types) + _SPARE_BYTES
    check_free_space(run.path, need)
    name = config.name or run.name
    files = [RunDir.export_gguf_name(qtype) for qtype in config.types]

    def save(folder: Path) -> None:
        for qtype, file in zip(config.types, files, strict=True):
            write_gguf(folder / file, model, tokenizer, qtype, name, progress.should_stop)
            progress.advance(1)
        text = modelfile_text(files[0], tokenizer, generation, name)
        atomic_write_text(folder / RunDir.export_modelfile_name(), text)

    folder = run.write_export(save)
    result = ExportResult(
        folder=folder,
        files=[folder / file for file in files],
        modelfile=folder / RunDir.export_modelfile_name(),
        name=ollama_name(name),
        template=chat_format(tokenizer) is not None,
    )
    result.commands = usage_commands(result)
    return result


def check_free_space(folder: Path, need: int) -> None:
    """Refuse, before anything is written, an export the disk of ``folder`` cannot hold."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ExportError(
            f"the export needs about {need / 1e6:,.0f} MB but the disk of {folder} has {free / 1e6:,.0f} MB free: "
            "free some space, or export fewer types (--types)"
        )


def usage_commands(result: ExportResult) -> list[str]:
    """The commands that run the export: Ollama from the Modelfile, llama.cpp's chat from the first GGUF file."""
    return [
        f"ollama create {result.name} -f {shlex.quote(str(result.modelfile))}",
        f"ollama run {result.name}",
        f"llama-cli -m {shlex.quote(str(result.files[0]))} -cnv",
    ]
