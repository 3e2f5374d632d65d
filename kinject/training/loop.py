"""The training loop: LoRA / QLoRA on packed blocks through transformers' Trainer, and its callbacks.

Causal-LM loss on the real tokens of the packed blocks: every token of the raw pages, the answers of question-answer
turns, and replay answers (cross-entropy, or KL(base || adapter) with ``replay_loss kl``). A 4-bit base is prepared
with ``prepare_model_for_kbit_training``. A ``TrainerCallback`` turns Trainer events into ``Progress`` calls and the
progress object's stop request into ``should_training_stop``, so the CLI (Ctrl-C), the job runner (stop button) and
tests all stop training the same way; the forgetting guard (``kinject.training.guard``) checks from the same callback.
This module trains; ``kinject.training.pipeline`` wires a run's stages around it (load, augment, pack, guard and the
run folder's records).
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..corpus.blocks import IGNORE_INDEX
from ..models.loading import base_hub_id, compute_dtype, with_lora
from ..runs import RunDir, checkpoint_step
from ..runtime.errors import KinjectError
from ..runtime.progress import Progress
from ..settings.fields import to_dict
from ..settings.training import TrainConfig
from . import processes
from .speed import cpu_bf16, lora_sums_in_fp32, use_checkpointing


class TrainError(KinjectError, RuntimeError):
    """Training failed; the message says why and the likely fix, ``phase`` where (for the job's status)."""

    def __init__(self, message: str, phase: str = "") -> None:
        super().__init__(message)
        self.phase = phase


@dataclass
class TrainResult:
    """What a finished (or stopped) training produced."""

    run_dir: Path
    adapter_dir: Path
    status: str  # "done" | "stopped"
    step: int
    total_steps: int
    final_loss: float | None
    seconds: float
    kept_step: int | None = None  # the step whose adapter was saved (the forgetting guard's choice)
    note: str = ""  # why that step (the guard's reason), for status messages
    learnt: bool | None = None  # the guard's verdict: False when nothing was learnt within its bound


@dataclass
class Attempt:
    """Where a training stands, for the message of a failure and for letting its memory go afterwards."""

    phase: str = "load model"
    four_bit: bool = False
    model: Any = None
    trainer: Any = None
    callback: Any = None

    def failure(self, exc: BaseException) -> str:
        """The readable message of ``exc`` raised at this point of the training."""
        return explain_failure(exc, _where(self.phase, self.callback, self.trainer), self.four_bit, self.phase)

    def release(self) -> None:
        """Drop the model and the trainer (which holds it), so their memory can go."""
        self.model = self.trainer = None


def collate(features: list[dict[str, list[int]]], pad_id: int, with_replay: bool = False) -> dict[str, Any]:
    """Pad a batch of blocks to its longest; padding is masked out of the labels.

    No attention mask unless a block keeps its chat header once (``corpus.prefix``): given none, transformers derives
    a per-document causal mask from the restarting position ids, so packed documents do not attend to each other;
    with a shared header the mask is built here, each document seeing its own tokens and the header. Padding only
    ever trails a block, so no real token can attend to it under the causal mask.
    """
    import torch

    from ..corpus.prefix import attention_mask

    width = max(len(f["input_ids"]) for f in features)

    def pad(key: str, value: int) -> Any:
        return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features], dtype=torch.long)

    batch = {
        "input_ids": pad("input_ids", pad_id),
        "labels": pad("labels", IGNORE_INDEX),
        "position_ids": pad("position_ids", 0),
    }
    if any(f.get("shared") for f in features):
        shared = torch.tensor([f["shared"] for f in features], dtype=torch.long)
        batch["attention_mask"] = attention_mask(pad("segment_ids", -1), shared)
    if with_replay:  # for the soft-target loss on replay tokens (KinjectTrainer), not the model
        batch["replay_mask"] = pad("replay_mask", 0)
    if "teacher_ids" in features[0]:  # context distillation's teacher turns (one example a row), for the loss
        longest = max(len(f["teacher_ids"]) for f in features) or 1
        batch["teacher_ids"] = torch.tensor(
            [f["teacher_ids"] + [pad_id] * (longest - len(f["teacher_ids"])) for f in features], dtype=torch.long
        )
        batch["teacher_lengths"] = torch.tensor([len(f["teacher_ids"]) for f in features], dtype=torch.long)
        batch["hard"] = torch.tensor([f["hard"] for f in features], dtype=torch.bool)
    return batch


def kinject_trainer(soft_replay: bool, kl_weight: float = 1.0):
    """The Trainer class: its loss is ``kinject.training.losses.causal_lm_loss`` (cross-entropy from the hidden states,
    one chunk of the vocabulary's logits at a time), plus ``kl_weight`` times KL(base || adapter) on replay tokens
    when ``soft_replay`` (the base's whole next-token distribution as a soft target; the base is the same PeftModel
    with its adapter off)."""
    from transformers import Trainer

    from .losses import causal_lm_loss

    class KinjectTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not soft_replay:
                inputs.pop("replay_mask", None)
            # The teacher's turns are the loss's business, never the model's inputs.
            loss = causal_lm_loss(model, inputs, kl_weight, num_items_in_batch)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
                # the count is every process's tokens (the Trainer sums it across them) and data parallel averages
                # the processes' gradients: scaled back, as the Trainer's own loss is, to one process's loss
                loss = loss * self.accelerator.num_processes
            return (loss, None) if return_outputs else loss

    return KinjectTrainer


def add_lora(
    model: Any, config: TrainConfig, four_bit: bool, progress: Progress, block_tokens: int | None = None
) -> Any:
    """``model`` made ready to train (k-bit preparation, gradient checkpointing when needed) with fresh LoRA
    layers; ``block_tokens``: tokens per micro-batch, for the checkpointing decision."""
    import torch
    from peft import LoraConfig, prepare_model_for_kbit_training

    checkpointing = use_checkpointing(config.gradient_checkpointing, model.config, block_tokens)
    if config.gradient_checkpointing == "auto":
        where = "GPU memory" if torch.cuda.is_available() else "RAM"
        progress.log(
            f"gradient checkpointing {'on' if checkpointing else 'off'} (auto: the activations and free {where})"
        )
    if four_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    targets = config.target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)
    model = with_lora(model, lora)
    if not torch.cuda.is_available() and cpu_bf16(config.cpu_bf16):
        lora_sums_in_fp32(model)
    trainable, total = model.get_nb_trainable_parameters()
    progress.log(f"LoRA: {trainable:,} trainable of {total:,} parameters ({'4-bit' if four_bit else 'full'} base)")
    return model


def training_arguments(
    output_dir: Path, config: TrainConfig, epochs: float, total_steps: int, by_length: bool = False
) -> Any:
    """The Trainer's arguments: ``config``'s optimizer, schedule and checkpoints, one log line a step; ``by_length``
    batches examples of like length together (one example a row: a short answer beside a long one pads less)."""
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    half = compute_dtype() if cuda else (torch.bfloat16 if cpu_bf16(config.cpu_bf16) else None)
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=epochs,
        max_steps=total_steps,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        bf16=half is torch.bfloat16,
        fp16=half is torch.float16,
        use_cpu=not cuda,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        include_num_input_tokens_seen="all",  # padding only trails the last block
        train_sampling_strategy="group_by_length" if by_length else "random",
        ddp_find_unused_parameters=False,  # every LoRA weight takes part in every step
    )


def make_trainer(
    model: Any, pad_id: int, blocks: Any, args: Any, config: TrainConfig, soft_replay: bool, callbacks: list[Any]
) -> Any:
    """The Trainer of ``model`` on ``blocks`` (soft targets on replay tokens when ``soft_replay``); progress goes
    through ``callbacks``, not print()."""
    from transformers import PrinterCallback

    trainer = kinject_trainer(soft_replay, config.kl_weight)(
        model=model,
        args=args,
        train_dataset=blocks,
        data_collator=lambda feats: collate(feats, pad_id, with_replay=soft_replay),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def fit(attempt: Attempt, run: RunDir, last: Path | None, total_steps: int, progress: Progress) -> int:
    """Run ``attempt.trainer`` to ``total_steps`` (from checkpoint ``last`` when resuming); returns the last step.

    Resuming a checkpoint at the last step trains nothing: the Trainer would run one step too many (e.g. after
    saving the adapter failed), so the checkpoint's weights and history are taken as they are."""
    trainer, callback = attempt.trainer, attempt.callback
    attempt.phase = "train"
    progress.start(attempt.phase, total=total_steps, unit="step")
    if last is not None:
        progress.advance(checkpoint_step(last), resumed_from=last.name)
    if last is not None and checkpoint_step(last) >= total_steps:
        attempt.phase = f"resume from {last.name}"
        _load_checkpoint_weights(attempt.model, trainer, run, last)
        callback.last_loss = next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None)
        progress.log(f"{last.name} is the last step: saving its adapter")
    else:
        trainer.train(resume_from_checkpoint=str(last) if last else None)
    progress.finish()
    return trainer.state.global_step


def _load_checkpoint_weights(model: Any, trainer: Any, run: RunDir, checkpoint: Path) -> None:
    """Put a checkpoint's LoRA weights into ``model`` and its training history into ``trainer.state``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    weights, state = run.checkpoint_files(checkpoint)
    if not weights.is_file():
        raise TrainError(f"{checkpoint} has no adapter weights; train again without --resume")
    result = set_peft_model_state_dict(model, load_file(str(weights)))
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    unexpected = list(getattr(result, "unexpected_keys", []))
    if missing or unexpected:
        raise TrainError(
            f"{checkpoint} does not match this model's LoRA layers ({len(missing)} missing, {len(unexpected)} "
            "unexpected); train again without --resume"
        )
    trainer.state = TrainerState.load_from_json(str(state))


def save_adapter(
    run: RunDir,
    model: Any,
    tokenizer: Any,
    trainer: Any,
    config: TrainConfig,
    status: str,
    step: int,
    total_steps: int,
    decision: Any = None,
    budget: dict[str, Any] | None = None,
) -> Path:
    """Write the run's adapter atomically: weights, config, tokenizer, resolved config.yaml, metrics, metadata
    (with the forgetting guard's checks, the step whose weights these are, and how the length was chosen)."""

    def save(folder: Path) -> None:
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        # peft records the base as the folder it was loaded from (for the bundled model, this machine's cache);
        # a shared adapter should name it as others can load it.
        adapter_config = folder / RunDir.ADAPTER_CONFIG
        data = json.loads(adapter_config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = base_hub_id(run.section("model").get("model"))
        adapter_config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    meta = {
        "status": status,
        "step": step,
        "total_steps": total_steps,
        "train": to_dict(config),
        "budget": budget,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if decision is not None:
        meta["kept_step"] = decision.step if decision.step is not None else step
        meta["guard"] = decision.to_dict()
    return run.write_adapter(save, meta, trainer.state.log_history if trainer is not None else [])


def _where(phase: str, callback: Any, trainer: Any) -> str:
    """Where in the job a failure happened, for its message: the step being trained, or the phase."""
    if phase == "train" and callback is not None:
        if callback.in_step:
            return f" at step {callback.current_step}"
        done = getattr(getattr(trainer, "state", None), "global_step", 0)
        return f" after step {done} (writing a checkpoint or log)" if done else " while starting training"
    return f" during {phase}" if phase else ""


def explain_failure(exc: BaseException, where: str = "", four_bit: bool = False, phase: str = "") -> str:
    """A human-readable message with the likely fix for a training failure (``where``: " at step 12")."""
    text = str(exc)
    first = text.splitlines()[0][:200] if text else type(exc).__name__
    if (silent := processes.describe_peer_timeout(text, where)) is not None:
        return silent
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        device = "CUDA out of memory" if "cuda" in (text + type(exc).__module__).lower() else "out of memory"
        if phase == "load model":
            fix = "the model does not fit: " + (
                "pick a smaller model" if four_bit else "train in 4-bit (--quantization 4bit) or pick a smaller model"
            )
        else:
            fix = "lower the block size (--block-size) or the batch size (--batch-size)"
            if not four_bit:
                fix += ", or train in 4-bit (--quantization 4bit)"
        return f"{device}{where}: {fix} ({first})"
    disk_full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    if disk_full or any(s in text.lower() for s in ("no space left on device", "os error 28")):
        name = getattr(exc, "filename", None) or "the run folder"
        return f"disk full{where} while writing {name}: free space and resume with --resume"
    if isinstance(exc, FileNotFoundError):
        return f"missing file{where}: {exc.filename or text}; the run folder may be incomplete, rerun prepare"
    return f"{type(exc).__name__}{where}: {text[:500]}"


def progress_callback(
    progress: Progress, total_steps: int, run: RunDir, guard: Any = None, writes: bool = True
) -> Any:
    """A ``TrainerCallback`` that bridges Trainer events to ``progress`` (and the run's metrics), turns its stop
    request into ``should_training_stop`` and lets the forgetting ``guard`` check at its steps. Its ``tracker``
    (``kinject.runtime.tracking``; none until the training sets one) gets each step's numbers and each check."""
    from transformers import TrainerCallback

    from ..runtime.tracking import Tracker

    class Callback(TrainerCallback):
        def __init__(self) -> None:
            self.tracker = Tracker()
            self.stopped = False
            self.in_step = False  # True from a step's start to its end: a failure then is "at" that step
            self.current_step = 0
            self.last_loss: float | None = None
            self._t0 = time.time()
            self._step0 = 0
            self._tok0 = 0

        def on_train_begin(self, args, state, control, **kw):
            self._t0 = time.time()
            self._step0 = state.global_step  # non-zero on resume
            self._tok0 = int(state.num_input_tokens_seen or 0)

        def on_step_begin(self, args, state, control, **kw):
            self.in_step, self.current_step = True, state.global_step + 1

        def on_step_end(self, args, state, control, **kw):
            self.in_step = False
            step = state.global_step
            guard_stop = guard is not None and step in guard.check_steps and guard.check(step)
            if guard is not None and guard.checks and guard.checks[-1].step == step:
                self.tracker.log(guard_metrics(guard.checks[-1]), step)
            asked = progress.should_stop()
            # the main process's stop (asked, or the guard's) stops every process of a training on several
            guard_stop, asked = processes.any_process(guard_stop, asked)
            if guard_stop or asked:
                self.stopped = True
                control.should_training_stop = True
            if asked:
                control.should_save = True  # a checkpoint to resume from

        def on_save(self, args, state, control, **kw):
            if writes and guard is not None and guard.checks:  # a resumed training keeps the checks made so far
                checkpoint = run.checkpoint_at(state.global_step)
                if checkpoint.is_dir():
                    run.save_guard_state(checkpoint, *guard.state())

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return
            self.last_loss = float(logs["loss"])
            elapsed = time.time() - self._t0
            rate = (state.global_step - self._step0) / elapsed if elapsed > 0 else 0.0
            left = max(total_steps - state.global_step, 0)
            tokens = int(state.num_input_tokens_seen or 0) - self._tok0
            row = {
                "step": state.global_step,
                "total": total_steps,
                "epoch": round(float(state.epoch or 0), 3),
                "loss": self.last_loss,
                "learning_rate": float(logs.get("learning_rate", 0.0)),
                "grad_norm": float(logs.get("grad_norm", 0.0) or 0.0),
                "tokens_per_s": round(tokens / elapsed, 1) if tokens and elapsed else None,
                "eta_s": round(left / rate, 1) if rate else None,
            }
            if writes:
                with contextlib.suppress(OSError):  # a full disk fails the next checkpoint, with its message
                    run.append_metric({"time": time.time(), **row})
            tracked = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch")
            self.tracker.log({f"train/{k}": row[k] for k in tracked}, state.global_step)
            progress.advance(1, **row)

    return Callback()


def guard_metrics(check: Any) -> dict[str, Any]:
    """One forgetting-guard check (``kinject.training.guard.Check``) as tracked numbers."""
    return {"guard/kl": check.kl, "guard/knowledge": check.knowledge, "guard/within_bound": check.within}
