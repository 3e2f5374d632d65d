"""Training's orchestration (stage: train): a run's model loaded, its augmentation made, its blocks packed, the
forgetting guard set up, the training run (``kinject.training.loop``) and the run folder's records kept; then, when
asked, the evaluation (``train_then_evaluate``, the one place where a training is followed by its evaluation: the CLI
and the job runner both call it).

On CUDA the base is loaded in 4-bit (nf4, double quantization, bf16 compute where supported); on a CPU plain LoRA on
the fp32 model is the default because bitsandbytes' CPU 4-bit path is ~14x slower per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..corpus.blocks import augmentation_kinds, ensure_blocks
from ..corpus.prefix import shares_header
from ..models.loading import context_length, load_model, load_tokenizer, resolve_model
from ..runs import RunDir, RunError, checkpoint_step, open_run_tracker
from ..runtime.progress import Progress
from ..runtime.tracking import Tracker
from ..settings.fields import from_dict, to_dict
from ..settings.resolve import training_blocks
from ..settings.stages import AugmentConfig, BlocksConfig, EvalConfig, GenerationConfig, ModelConfig
from ..settings.training import TrainConfig
from . import processes
from .budget import Budget, plan_epochs
from .loop import (
    Attempt,
    TrainError,
    TrainResult,
    add_lora,
    fit,
    make_trainer,
    progress_callback,
    save_adapter,
    training_arguments,
)


def train(
    run_dir: str | Path | RunDir,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
    blocks: BlocksConfig | None = None,
    augment: AugmentConfig | None = None,
) -> TrainResult:
    """Train a LoRA adapter on the run's blocks and save it as the run's adapter.

    ``blocks`` are the blocks to train on (packed from the corpus once, then cached); by default those the run
    was packed with, with the preset's block size and text format. ``progress.should_stop()`` ends training at
    the next step; the adapter trained so far is saved (and a checkpoint, so ``resume=True`` continues from it
    with the same configuration, optimizer, scheduler and data order; ``config`` and ``blocks`` are then taken
    from the run, except ``eval_at_end``). ``callbacks`` are extra ``TrainerCallback``s (the knowledge sweep
    scores probes between epochs with one). ``augment`` says how to generate the augmentation the blocks use
    (by default the run's ``augment`` section); it is generated once, then cached.
    """
    run = RunDir(run_dir).require()
    config = config or TrainConfig()
    # The lock first: a training still loading its model has written no settings yet, and a resume must hear that
    # it runs, not that the run was never trained. With several processes the main one holds it for all.
    with run.training_lock() if processes.is_main() else contextlib.nullcontext():
        if resume:
            saved = run.section("train")
            if not saved:
                raise TrainError(f"nothing to resume: {run} was never trained")
            config = from_dict(TrainConfig, {**saved, "eval_at_end": config.eval_at_end}, "train")
            legacy = {k: saved[k] for k in ("block_size", "text_format") if saved.get(k) is not None}  # older runs
            blocks = from_dict(BlocksConfig, {**run.section("blocks"), **legacy}, "blocks")
            augment = None
        elif blocks is None:
            blocks = training_blocks(run.section("blocks"), config.preset)
        augment = augment or from_dict(AugmentConfig, run.section("augment"), "augment")
        return _train(run, _Job(config, blocks, augment, progress or Progress(), resume, callbacks or []))


@dataclass
class _Job:
    """One training's settings, as ``train`` resolved them."""

    config: TrainConfig
    blocks: BlocksConfig
    augment: AugmentConfig
    progress: Progress
    resume: bool
    callbacks: list[Any]


def _train(run: RunDir, job: _Job) -> TrainResult:
    """Train, turning every failure into a ``TrainError`` that says where, and freeing the model's memory."""
    import torch

    # Checks before destruction: the run, its model, augmentation and blocks are all checked (and loaded) before
    # this training touches the run's checkpoints, metrics or settings, so one that fails at once leaves what
    # --resume needs as it was.
    model_cfg = from_dict(ModelConfig, run.section("model"), "model")
    last = run.last_checkpoint() if job.resume else None
    if job.resume and last is None:
        raise TrainError(f"nothing to resume: {run.checkpoints_dir} has no checkpoint", "check run")
    if not run.has_corpus():
        raise TrainError(
            f"{run} has no corpus to train on: prepare it first (`kinject prepare --out {run}`)", "check run"
        )
    _check_questions(job.augment)
    attempt = _Attempt()
    processes.setup()  # with several processes: joined, and on its own GPU before the model loads
    if not processes.is_main():  # only the main process reports and writes the run folder
        job = dataclasses.replace(job, progress=Progress())
    try:
        return _run_stages(run, job, model_cfg, last, attempt)
    except TrainError as exc:
        exc.phase = exc.phase or attempt.phase
        attempt.tracker.finish()  # its files closed before the previous training's come back
        _settle_previous(run, attempt.set_aside)
        traceback.clear_frames(exc.__traceback__)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
        attempt.tracker.finish()
        _settle_previous(run, attempt.set_aside)
        message = attempt.failure(exc)
        traceback.clear_frames(exc.__traceback__)  # its frames hold the model: let the memory go with them
        raise TrainError(message, attempt.phase) from exc
    finally:
        attempt.tracker.finish()
        attempt.release()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _check_questions(augment: AugmentConfig) -> None:
    """A question file given to this training that cannot be used is named before any model is loaded."""
    from ..augment import QuestionFileError, read_question_file

    for path in augment.questions:
        if Path(path).is_file():
            try:
                read_question_file(path)
            except QuestionFileError as exc:
                raise TrainError(str(exc), "check run") from None


@dataclass
class _Attempt(Attempt):
    """The training's state for failures, whether the previous training's checkpoints were set aside, and the
    tracker of its curves (finished however the training ends)."""

    set_aside: bool = False
    tracker: Tracker = dataclasses.field(default_factory=Tracker)


def _run_stages(run: RunDir, job: _Job, model_cfg: ModelConfig, last: Path | None, attempt: _Attempt) -> TrainResult:
    """Load, augment, pack, set up LoRA, the guard and the Trainer, claim the run, train, save the adapter."""
    started = time.time()
    config, progress = job.config, job.progress
    progress.start(attempt.phase, total=None)
    resolved = resolve_model(model_cfg.model, model_cfg.revision, progress)
    tokenizer = load_tokenizer(resolved)
    attempt.four_bit = _use_4bit(config)
    model = attempt.model = load_model(resolved, quantization="4bit" if attempt.four_bit else "none")
    progress.finish()
    main = processes.is_main()
    # the main process generates and packs; the others wait, then read what it cached
    augmentation = _main_first(lambda: _augment(run, job, model, tokenizer, model_cfg, attempt))
    model.config.use_cache = False  # a KV cache in training would also disable the per-document mask
    attempt.phase = "prepare training"
    blocks, stats = _main_first(lambda: _pack(run, job, tokenizer, model.config, augmentation))
    block_tokens = config.batch_size * stats.block_size
    model = attempt.model = add_lora(model, config, attempt.four_bit, progress, block_tokens)
    budget, total_steps = _plan(run, job, len(blocks), augmentation)
    guard = _guard(run, config, model, tokenizer, total_steps, last, progress) if main else None
    attempt.callback = progress_callback(progress, total_steps, run, guard, writes=main)
    args = training_arguments(run.checkpoints_dir, config, budget.epochs, total_steps, job.blocks.packing == "rows")
    soft_replay = config.replay_loss == "kl" and stats.replay_tokens > 0
    callbacks = [attempt.callback, *job.callbacks]
    attempt.trainer = make_trainer(model, tokenizer.pad_token_id, blocks, args, config, soft_replay, callbacks)
    _main_first(lambda: _claim_run(run, job, last, attempt) if main else None)
    if main:  # after the claim: a fresh training's TensorBoard folder is its own
        attempt.tracker = attempt.callback.tracker = _track(run, job, guard, last)
    processes.limit_peer_wait()  # from here the processes meet at every step: a silent one fails the others
    step = fit(attempt, run, last, total_steps, progress)
    status = "stopped" if attempt.callback.stopped and not (guard and guard.stopped_early) else "done"
    if not main:  # the main process saves the adapter and says how the training went
        loss = attempt.callback.last_loss
        return TrainResult(run.path, run.adapter_dir, status, step, total_steps, loss, time.time() - started)
    decision = guard.decide(step) if guard is not None else None
    if decision is not None:
        progress.log(f"forgetting guard: {decision.reason}")
        attempt.tracker.log({"guard/kept_step": decision.step, "guard/learnt": decision.learnt}, step)
    attempt.phase = "save adapter"
    progress.start(attempt.phase, total=None)
    adapter_dir = save_adapter(
        run, model, tokenizer, attempt.trainer, config, status, step, total_steps, decision, budget.to_dict()
    )
    run.drop_previous()
    progress.finish()
    kept = decision.step if decision is not None and decision.step is not None else step
    note = f"forgetting guard: {decision.reason}" if decision is not None else ""
    learnt = decision.learnt if decision is not None else None
    loss, seconds = attempt.callback.last_loss, time.time() - started
    return TrainResult(run.path, adapter_dir, status, step, total_steps, loss, seconds, kept, note, learnt)


def _main_first(work: Any) -> Any:
    """``work()`` on the main process, then on the others once it is done (alone: just ``work()``)."""
    if processes.world_size() > 1 and not processes.is_main():
        processes.barrier()
        return work()
    value = work()
    if processes.world_size() > 1:
        processes.barrier()
    return value


def _use_4bit(config: TrainConfig) -> bool:
    import torch

    if config.quantization == "auto":
        return torch.cuda.is_available()
    return config.quantization == "4bit"


def _augment(run: RunDir, job: _Job, model: Any, tokenizer: Any, model_cfg: ModelConfig, attempt: Attempt) -> Any:
    """The augmentation the blocks use (None when they use none), generated by the model just loaded, before
    training changes its settings."""
    from ..augment import AugmentError, LocalGenerator, QuestionFileError, ensure_augmentation

    kinds = augmentation_kinds(job.blocks)
    if not kinds and not (job.augment.questions or run.read_user_questions()):
        return None
    attempt.phase = "augment"
    if {"qa", "replay"} & set(kinds) and not getattr(tokenizer, "chat_template", None):
        raise TrainError(
            f"{model_cfg.model} has no chat template, and question-answer pairs and replay are chat turns: "
            "train it on raw text (--preset cpu-demo, or --no-use-qa --replay-share 0)"
        )
    base = LocalGenerator(model.eval(), tokenizer, job.augment.augment_batch_size, job.progress)
    try:
        return ensure_augmentation(run, job.augment, kinds, job.progress, base=base)
    except (AugmentError, QuestionFileError, RunError) as exc:
        raise TrainError(str(exc)) from None
    except InterruptedError:
        raise TrainError(
            "stopped during augmentation: nothing was trained (each kind of data finished before the stop "
            "is saved, and the next start goes on from there)"
        ) from None


def _pack(run: RunDir, job: _Job, tokenizer: Any, model_config: Any, augmentation: Any) -> tuple[Any, Any]:
    """The blocks to train on and their stats (packed now, or cached)."""
    context, share = context_length(model_config), shares_header(model_config, job.blocks.block_size)
    try:
        blocks, stats, packed = ensure_blocks(
            run, job.blocks, tokenizer, context, job.progress, augmentation, share, job.config.seed
        )
    except (RunError, ValueError) as exc:
        raise TrainError(str(exc)) from None
    if packed:
        saved = stats.corpus_tokens - stats.tokens_kept  # every token is kept but the shared header's copies
        shared = (
            f"; the chat template's header kept once a block, {saved:,} of {stats.corpus_tokens:,} tokens not "
            "computed again"
            if saved
            else ""
        )
        job.progress.log(
            f"packed the corpus ({job.blocks.text_format}) into {stats.blocks} blocks of {stats.block_size} tokens"
            + shared
        )
    return blocks, stats


def _plan(run: RunDir, job: _Job, blocks: int, augmentation: Any) -> tuple[Budget, int]:
    """The epochs (from the facts to be learnt, unless set) and the optimizer steps they take."""
    config = job.config
    budget = plan_epochs(config.epochs, config.fact_exposures, run.load_corpus().to_list(), job.blocks, augmentation)
    global_batch = config.batch_size * config.gradient_accumulation * processes.world_size()
    steps_per_epoch = math.ceil(blocks / global_batch)
    total_steps = config.max_steps or math.ceil(steps_per_epoch * budget.epochs)
    if not config.max_steps:
        job.progress.log(f"training length: {total_steps} steps, {budget.reason}")
    return budget, total_steps


def _guard(
    run: RunDir,
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    total_steps: int,
    last: Path | None,
    progress: Progress,
) -> Any:
    """The forgetting guard (None when off, or when it cannot measure this model: that must not cost the training).
    It checks at the same steps as an uninterrupted training; on resume the earlier checks come from the
    checkpoint."""
    from .guard import ForgettingGuard, check_steps, knowledge_items

    first = checkpoint_step(last) if last is not None else 0
    steps = [s for s in check_steps(total_steps, config.guard_checks or 0) if s > first]
    saved = run.load_guard_state(last) if last is not None else None
    if not (config.guard_checks and (steps or saved)):
        return None
    items = knowledge_items(run.load_corpus().to_list())
    try:
        guard = ForgettingGuard(
            model, tokenizer, items, config.guard_kl_max, steps, config.guard_patience, progress, config.guard_keep
        )
        if saved:
            guard.restore(*saved)
    except Exception as exc:  # noqa: BLE001 - a guard that cannot measure must not cost the training
        progress.log(f"forgetting guard off: it could not measure this model ({type(exc).__name__}: {exc})")
        return None
    return guard


def _track(run: RunDir, job: _Job, guard: Any, last: Path | None) -> Tracker:
    """The tracker of this training (``job.config.report_to``; a resumed training continues its tracked run), with
    what is known before the first step: the data report's counts and the base model's knowledge as the guard
    measured it. A tracker that cannot start says so and tracks nothing."""
    tracker = open_run_tracker(run, job.config.report_to, resume=last is not None, warn=job.progress.log)
    report = run.read_data_report() or {}
    known = {f"data/{k}": v for k, v in report.items() if isinstance(v, (int, float)) and k != "well_asked_at"}
    if guard is not None and guard.base_knowledge is not None:
        known["guard/base_knowledge"] = guard.base_knowledge
    tracker.log(known, checkpoint_step(last) if last is not None else 0)
    return tracker


def _claim_run(run: RunDir, job: _Job, last: Path | None, attempt: _Attempt) -> None:
    """Training really begins: only now does a fresh start set the older run's checkpoints and metrics aside (it
    must not resume their state), and this training's settings become the run's."""
    if last is not None:
        run.trim_metrics(checkpoint_step(last))  # steps after the checkpoint are trained again
    else:
        run.set_aside_previous()  # back in place if this training fails before its first checkpoint
        attempt.set_aside = True
    run.update_config(train=to_dict(job.config), blocks=to_dict(job.blocks), augment=to_dict(job.augment))


def _settle_previous(run: RunDir, set_aside: bool) -> None:
    """After a failed fresh training: the previous training's checkpoints come back unless this one saved its own
    (then --resume continues this one)."""
    if not processes.is_main():
        return
    if set_aside and run.last_checkpoint() is not None:
        run.drop_previous()
    elif set_aside:
        run.restore_previous()


@dataclass
class TrainingOutcome:
    """A training and, when asked for, its evaluation."""

    result: TrainResult
    report: Any = None  # kinject.eval.EvalReport, when evaluated
    eval_error: str = ""  # why the evaluation asked for did not finish
    message: str = ""


def train_then_evaluate(
    run_dir: str | Path | RunDir,
    config: TrainConfig | None,
    progress: Progress,
    resume: bool = False,
    blocks: BlocksConfig | None = None,
    evaluation: EvalConfig | None = None,
    generation: GenerationConfig | None = None,
    augment: AugmentConfig | None = None,
) -> TrainingOutcome:
    """Train, then (``config.eval_at_end``, training done) evaluate the adapter; raises what ``train`` raises.

    The adapter is saved before evaluation starts, so a failed or stopped evaluation leaves the training done.
    """
    from ..eval import evaluate

    config = config or TrainConfig()
    result = train(run_dir, config, progress, resume=resume, blocks=blocks, augment=augment)
    outcome = TrainingOutcome(result, message=f"{result.status} at step {result.step}/{result.total_steps}")
    if result.learnt is False:  # said first, in words: the adapter is the base in disguise or drifts
        outcome.message = f"{outcome.message}: the adapter learnt nothing within the forgetting bound"
    outcome.message += "; adapter saved" + (f" ({result.note})" if result.note else "")
    if config.eval_at_end and result.status == "done" and processes.is_main():
        try:
            progress.start("evaluate")
            outcome.report = evaluate(run_dir, evaluation, progress, generation)
            outcome.message += "; evaluation written"
        except Exception as exc:  # noqa: BLE001 - reported with the training's outcome, which stands
            outcome.eval_error = f"{type(exc).__name__}: {exc}"
            outcome.message += f"; evaluation did not finish ({outcome.eval_error})"
    return outcome
