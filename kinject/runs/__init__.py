"""Run folders: ``RunDir`` is the one owner of a run folder's paths, reads, atomic writes and training lock.

Every stage reads and writes one folder (``runs/<name>/``), so each can be rerun alone and the app can show any past
run. No other module spells a file name of that folder (they are spelled once, in ``kinject.runs.paths``); they ask
a ``RunDir``:

    config.yaml      resolved configuration, one section per stage (never secrets)
    sources.jsonl    one row per input
    corpus/          datasets.Dataset of the cleaned documents
    augment/         generated training data (paraphrases, question-answer pairs, replay), one file pair per kind and
                     settings, each row with the passage it came from (see kinject.augment)
    blocks/<key>/    packed blocks (datasets.Dataset) and blocks.json, one folder per packing (see kinject.corpus.blocks)
    status.json      the last job's state;  metrics.jsonl  one line per logged training step
    checkpoints/     for resume;  adapter/  the trained adapter;  merged/  adapter merged into the base
    export/          the merged model as GGUF files (model-f16.gguf, model-q8_0.gguf) and an Ollama Modelfile; or the
                     adapter as adapter.gguf over the base's GGUF (base-q8_0.gguf) with Modelfile.adapter
    eval.json, eval.md, eval.png   the evaluation report
    ablation.json, ablation.md     recipe variants compared (their runs under ablation/)
    train-processes.log            the output of a training the app started on several processes
    tensorboard/     TensorBoard's event files of the training and its evaluation (report_to tensorboard)

The package by job: ``paths`` (names, paths, is it a run), ``files`` (atomic writes, reads, the lock),
``shapes`` (what each JSON file must hold, checked as it is read, so a damaged file is named with its field),
``records`` (config, status, metrics, pushes), ``data`` (sources, corpus, blocks, augmentation), ``evaluation``,
``checkpoints``, ``adapters`` (adapter and merged model), ``folders`` (create, copy, lock, delete), ``rundir``,
which composes them into ``RunDir``, and ``tracking`` (the run's experiment tracker, on ``kinject.runtime.tracking``).

May import: ``kinject.settings`` (the sections of config.yaml), ``kinject.runtime``.
"""

from .checkpoints import checkpoint_step
from .errors import AdapterDamagedError, ConfigDamagedError, RunBusyError, RunDamagedError, RunError
from .files import (
    atomic_write_file,
    atomic_write_json,
    atomic_write_text,
    read_json,
    read_jsonl,
    replaced_dir,
    safetensors_complete,
    write_jsonl,
)
from .rundir import RunDir
from .tracking import open_run_tracker, viewing_command

__all__ = [
    "AdapterDamagedError",
    "ConfigDamagedError",
    "RunBusyError",
    "RunDamagedError",
    "RunDir",
    "RunError",
    "atomic_write_file",
    "atomic_write_json",
    "atomic_write_text",
    "checkpoint_step",
    "open_run_tracker",
    "read_json",
    "read_jsonl",
    "replaced_dir",
    "safetensors_complete",
    "viewing_command",
    "write_jsonl",
]
