"""Export a run for llama.cpp and Ollama into ``export/``: the merged model (its adapter folded into the base, as
``merge`` folds it) as one GGUF file per type asked for (``kinject.sharing.gguf_model``) with an Ollama ``Modelfile``
(``kinject.sharing.modelfile``); and/or the LoRA adapter alone as ``adapter.gguf`` (``kinject.sharing.gguf_lora``) over
the base model's GGUF (the bundled model's own file, copied, else the base written per type) with
``Modelfile.adapter`` (FROM the base, ADAPTER the adapter).

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
from .gguf_lora import lora_bytes, write_lora_gguf
from .gguf_model import write_gguf
from .gguf_tensors import ExportError, check_architecture, estimate_bytes
from .merge import fold_adapter, load_base
from .modelfile import chat_format, modelfile_text, ollama_name

_SPARE_BYTES = 64 << 20  # beyond the estimate: the file system's own needs, a margin on the vocabulary's size


@dataclass
class ExportResult:
    """What ``export`` wrote, and the commands that use it."""

    folder: Path
    files: list[Path]  # the merged model's GGUF files, in the order of the types asked for (none for --what lora)
    modelfile: Path | None  # the merged model's Modelfile
    name: str  # the model's name in Ollama (the merged model's; the adapter's alone: its own)
    template: bool  # whether the Modelfiles have a TEMPLATE (False: the chat format is not one kinject writes)
    adapter: Path | None = None  # the LoRA adapter's GGUF file
    base: Path | None = None  # the base GGUF file the adapter goes over (the first, when several types were written)
    adapter_modelfile: Path | None = None  # FROM the base, ADAPTER the adapter
    adapter_name: str | None = None  # that model's name in Ollama
    commands: list[str] = field(default_factory=list)


def export(
    run_dir: str | Path | RunDir,
    config: ExportConfig | None = None,
    generation: GenerationConfig | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write ``run_dir/export`` atomically as ``config.what`` asks (see the module's docstring) with the decoding
    settings of ``generation`` in the Modelfiles. Holds the run's training lock (the adapter must not change
    meanwhile); a base of another architecture is refused before it is loaded."""
    import torch

    run = RunDir(run_dir)
    adapter = run.require_adapter()
    config, progress = config or ExportConfig(), progress or Progress()
    parts = _Parts(run, adapter, config, generation or GenerationConfig(), progress, _check_base(run))
    # The base model is loaded to fold the adapter in, or to write it for the adapter; the bundled model's own GGUF
    # is the adapter's base as it is.
    load = parts.merged or (parts.lora and parts.bundled is None)
    with run.training_lock():
        progress.start("export", total=parts.steps(load), unit="step")
        try:
            if load:  # float32: the adapter's update is folded in without rounding; each type rounds once from there
                model, tokenizer = load_base(run, torch.float32, progress)
            else:
                model, tokenizer = None, _tokenizer(run)
            return parts.write(model, tokenizer)
        finally:
            progress.finish()


def _check_base(run: RunDir) -> Path | None:
    """Refuse a base kinject cannot export, from its config alone (before minutes of loading); the bundled model's
    own GGUF file when the base is the bundled model, else None."""
    from transformers import AutoConfig

    from ..models.loading import bundled_gguf_path

    resolved = _resolved(run)
    check_architecture(AutoConfig.from_pretrained(resolved.path, revision=resolved.revision, token=resolved.token))
    return bundled_gguf_path() if resolved.kind == "bundled" else None


def _resolved(run: RunDir) -> Any:
    from ..models.loading import resolve_model
    from ..settings.fields import from_dict
    from ..settings.stages import ModelConfig

    cfg = from_dict(ModelConfig, run.section("model"), "model")
    return resolve_model(cfg.model, cfg.revision)


def _tokenizer(run: RunDir) -> Any:
    from ..models.loading import load_tokenizer

    return load_tokenizer(_resolved(run))


@dataclass
class _Parts:
    """One export's parts, written into the temporary folder in turn: the base for the adapter (before the adapter
    is folded into it), the adapter, the merged model, the Modelfiles."""

    run: RunDir
    adapter: Path
    config: ExportConfig
    generation: GenerationConfig
    progress: Progress
    bundled: Path | None  # the bundled model's own GGUF, the adapter's base as it is

    @property
    def merged(self) -> bool:
        return self.config.what in ("merged", "both")

    @property
    def lora(self) -> bool:
        return self.config.what in ("lora", "both")

    def steps(self, load: bool) -> int:
        """The progress steps: loading the base, folding the adapter in, each file."""
        types = len(self.config.types)
        bases = 1 if self.bundled is not None else types
        return int(load) + (1 + types) * self.merged + (bases + 1) * self.lora

    def base_files(self) -> list[str]:
        if self.bundled is not None:
            return [self.bundled.name]
        return [RunDir.export_base_name(qtype) for qtype in self.config.types]

    def need(self, model: Any) -> int:
        """About how many bytes the export takes."""
        per_model = sum(estimate_bytes(model, qtype) for qtype in self.config.types) if model is not None else 0
        need = per_model * self.merged + _SPARE_BYTES
        if self.lora:
            need += lora_bytes(self.adapter) + (self.bundled.stat().st_size if self.bundled else per_model)
        return need

    def write(self, model: Any, tokenizer: Any) -> ExportResult:
        """Write ``export/`` from the base ``model`` (None: not needed) and its ``tokenizer``; nothing is left
        behind when it fails or the progress asks to stop."""
        if model is not None:
            check_architecture(model.config, type(model).__name__)
        check_free_space(self.run.path, self.need(model))
        name, types = self.config.name or self.run.name, self.config.types
        files = [RunDir.export_gguf_name(qtype) for qtype in types] if self.merged else []
        adapter_file, modelfile = RunDir.export_adapter_name(), RunDir.export_modelfile_name()

        def save(folder: Path) -> None:
            if self.lora:
                self._write_lora(folder, model, tokenizer, name)
            if self.merged:
                merged = fold_adapter(model, self.adapter, self.progress)
                for qtype, file in zip(types, files, strict=True):
                    write_gguf(folder / file, merged, tokenizer, qtype, name, self.progress.should_stop)
                    self.progress.advance(1)
                text = modelfile_text(files[0], tokenizer, self.generation, name)
                atomic_write_text(folder / modelfile, text)

        folder = self.run.write_export(save)
        result = ExportResult(
            folder=folder,
            files=[folder / file for file in files],
            modelfile=folder / modelfile if self.merged else None,
            name=ollama_name(name),
            template=chat_format(tokenizer) is not None,
        )
        if self.lora:
            result.adapter, result.base = folder / adapter_file, folder / self.base_files()[0]
            result.adapter_modelfile = folder / RunDir.export_adapter_modelfile_name()
            result.adapter_name = ollama_name(f"{name}-lora" if self.merged else name)
        result.commands = usage_commands(result)
        return result

    def _write_lora(self, folder: Path, model: Any, tokenizer: Any, name: str) -> None:
        """The base (copied, or written per type from the unmerged ``model``), the adapter, their Modelfile."""
        bases = self.base_files()
        if self.bundled is not None:
            shutil.copyfile(self.bundled, folder / bases[0])
            self.progress.advance(1)
        else:
            for qtype, file in zip(self.config.types, bases, strict=True):
                write_gguf(folder / file, model, tokenizer, qtype, f"{name} base", self.progress.should_stop)
                self.progress.advance(1)
        config = model.config if model is not None else _base_config(self.run)
        arch = type(model).__name__ if model is not None else None
        write_lora_gguf(folder / RunDir.export_adapter_name(), self.adapter, config, name, arch)
        self.progress.advance(1)
        text = modelfile_text(bases[0], tokenizer, self.generation, name, adapter=RunDir.export_adapter_name())
        atomic_write_text(folder / RunDir.export_adapter_modelfile_name(), text)


def _base_config(run: RunDir) -> Any:
    from transformers import AutoConfig

    resolved = _resolved(run)
    return AutoConfig.from_pretrained(resolved.path, revision=resolved.revision, token=resolved.token)


def check_free_space(folder: Path, need: int) -> None:
    """Refuse, before anything is written, an export the disk of ``folder`` cannot hold."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ExportError(
            f"the export needs about {need / 1e6:,.0f} MB but the disk of {folder} has {free / 1e6:,.0f} MB free: "
            "free some space, or export fewer types (--types)"
        )


def usage_commands(result: ExportResult) -> list[str]:
    """The commands that run the export: Ollama from each Modelfile, llama.cpp's chat from the first merged GGUF
    file, and from the base with the adapter (``--lora``)."""
    commands = []
    if result.modelfile is not None:
        commands += [
            f"ollama create {result.name} -f {shlex.quote(str(result.modelfile))}",
            f"ollama run {result.name}",
            f"llama-cli -m {shlex.quote(str(result.files[0]))} -cnv",
        ]
    if result.adapter is not None and result.adapter_modelfile is not None:
        commands += [
            f"ollama create {result.adapter_name} -f {shlex.quote(str(result.adapter_modelfile))}",
            f"ollama run {result.adapter_name}",
            f"llama-cli -m {shlex.quote(str(result.base))} --lora {shlex.quote(str(result.adapter))} -cnv",
        ]
    return commands
