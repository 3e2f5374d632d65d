"""The names of a run folder's files (spelled here and nowhere else), its paths, and whether it is a run at all."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from .errors import RunError

_Self = TypeVar("_Self", bound="RunPaths")


class RunPaths:
    """Where each file of one run folder lives. Cheap to create; nothing is read until asked."""

    _CONFIG = "config.yaml"
    _SOURCES = "sources.jsonl"
    _CORPUS = "corpus"
    _BLOCKS = "blocks"
    _BLOCKS_JSON = "blocks.json"
    _AUGMENT = "augment"
    _QUESTIONS = "questions.jsonl"  # the user's own question-answer pairs, as prepare or train read them
    _DATA_REPORT = "data-report.json"  # what the training data asks about each fact (kinject.augment.report)
    _STATUS = "status.json"
    _METRICS = "metrics.jsonl"
    _CHECKPOINTS = "checkpoints"
    _ADAPTER = "adapter"
    _ADAPTER_CONFIG = "adapter_config.json"  # peft's, the mark of a saved adapter
    _ADAPTER_META = "kinject.json"
    _ADAPTER_HISTORY = "training_metrics.json"
    _ADAPTER_WEIGHTS = "adapter_model.safetensors"
    _TRAINER_STATE = "trainer_state.json"
    _GUARD_STATE = "guard.json"  # in a checkpoint: the forgetting guard's checks so far and its best step
    _GUARD_WEIGHTS = "guard_best.safetensors"  # ... and that step's LoRA weights
    _MERGED = "merged"
    _MERGE_RECORD = "kinject-merge.json"  # in merged/: the sha256 of the adapter weights it was made from
    _EXPORT = "export"  # the merged model and/or the adapter as GGUF files with Ollama Modelfiles (kinject export)
    _EXPORT_GGUF = "model-{}.gguf"  # in export/: one file per type, model-f16.gguf, model-q8_0.gguf
    _MODELFILE = "Modelfile"  # in export/: Ollama's recipe, FROM the first GGUF file
    _EXPORT_ADAPTER = "adapter.gguf"  # in export/: the LoRA adapter alone (kinject export --what lora)
    _EXPORT_BASE = "base-{}.gguf"  # in export/: the base model the adapter goes over, one file per type
    _ADAPTER_MODELFILE = "Modelfile.adapter"  # in export/: Ollama's recipe, FROM the base GGUF, ADAPTER the adapter
    _EVAL_JSON = "eval.json"
    _EVAL_MD = "eval.md"
    _EVAL_PNG = "eval.png"
    # An evaluation's own name by kind: a complete full one is eval.*, a quick or stopped one never replaces it.
    _EVAL_STEMS = {"full": "eval", "quick": "eval-quick", "stopped": "eval-stopped"}
    _ABLATION_JSON = "ablation.json"
    _ABLATION_MD = "ablation.md"
    _ABLATION = "ablation"  # the variants' runs of kinject ablate, a run folder each
    _TENSORBOARD = "tensorboard"  # TensorBoard's event files of the training and its evaluation (report_to)
    _PROCESSES_LOG = "train-processes.log"  # the output of a training's processes when the app started several
    _LOCK = ".train.lock"
    _PUSHES = "pushes.jsonl"  # one row per successful push to the Hub (repo, commit, when; never the token)
    _PREVIOUS = ".previous"  # a fresh training's predecessor (checkpoints, metrics, config) until it is safe to drop

    # The trackio project of every run but an ablation's variants (tracking_names).
    TRACKING_PROJECT = "kinject"

    # Names fixed by others: peft's adapter config and weights, the Hub's model card, the merged model's folder in a
    # Hub repo.
    ADAPTER_CONFIG = _ADAPTER_CONFIG
    ADAPTER_WEIGHTS = _ADAPTER_WEIGHTS
    CARD = "README.md"
    MERGED_IN_REPO = _MERGED

    # Names a user sees in messages and the docs' run-folder table.
    EVAL_FILES = (_EVAL_JSON, _EVAL_MD, _EVAL_PNG)

    def __init__(self, path: str | Path | RunPaths):
        self.path = Path(path.path if isinstance(path, RunPaths) else path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunPaths) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / self._CONFIG

    @property
    def checkpoints_dir(self) -> Path:
        """Where the Trainer writes ``checkpoint-N`` folders."""
        return self.path / self._CHECKPOINTS

    @property
    def adapter_dir(self) -> Path:
        return self.path / self._ADAPTER

    @property
    def merged_dir(self) -> Path:
        return self.path / self._MERGED

    @property
    def export_dir(self) -> Path:
        """Where ``kinject export`` writes the GGUF files and the Modelfile."""
        return self.path / self._EXPORT

    @property
    def ablation_dir(self) -> Path:
        """Where ``kinject ablate`` trains its variants, a run folder each."""
        return self.path / self._ABLATION

    @property
    def tensorboard_dir(self) -> Path:
        """Where a training and its evaluation write TensorBoard event files (report_to 'tensorboard')."""
        return self.path / self._TENSORBOARD

    def tracking_names(self) -> tuple[str, str]:
        """(project, run name) of this run's tracked curves: a variant of an ablation (``RUN/ablation/VARIANT``) in
        the project ``RUN-ablation`` under its variant's name, so the variants' curves sit side by side; any other
        run in the project ``kinject`` under its folder's name."""
        path = self.path.resolve()
        if path.parent.name == self._ABLATION and (path.parent.parent / self._CONFIG).is_file():
            return f"{path.parent.parent.name}-ablation", path.name
        return self.TRACKING_PROJECT, path.name

    @property
    def processes_log(self) -> Path:
        """The output of a training's processes, when the app started it on several devices."""
        return self.path / self._PROCESSES_LOG

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def require(self: _Self) -> _Self:
        """This folder, or a clear error when it is not a run folder."""
        if not self.is_run():
            raise RunError(f"{self.path} is not a run folder (no {self._CONFIG}); create it with `kinject prepare`")
        return self
