"""The training stage's settings: LoRA / QLoRA on a run's blocks, the replay beside it and the forgetting guard."""

from __future__ import annotations

from dataclasses import dataclass

from .choices import GuardKeep, Quantization, ReplayLoss, ReportTo, Scheduler, Switch
from .declare import check_choice, check_seed, require, setting
from .presets import DEFAULT_PRESET, PRESETS, PresetName


@dataclass
class TrainConfig:
    """LoRA / QLoRA training of a run's blocks (stage: train). ``preset`` fills the fields left unset (None)."""

    _argument_group_name = "train"

    preset: PresetName = setting(DEFAULT_PRESET, "Named recipe whose values fill every setting not given.")
    epochs: float | None = setting(None, "Passes over the blocks (unset: as many as fact_exposures asks for).")
    fact_exposures: float | None = setting(
        None,
        "Times each fact of the pages should be seen in training, counting the page, its paraphrases and every "
        "question-answer pair whose answer states it; sets the epochs when they are not given (bounded to 1-12), "
        "so a short page gets enough passes and many pages no more passes than one.",
    )
    max_steps: int | None = setting(None, "Stop after this many optimizer steps (overrides epochs when set).")
    learning_rate: float | None = setting(None, "Peak learning rate of the LoRA weights.", aliases=["--lr"])
    lora_r: int | None = setting(None, "LoRA rank.", aliases=["--rank"])
    lora_alpha: int | None = setting(None, "LoRA alpha (scale = alpha / r).", aliases=["--alpha"])
    lora_dropout: float | None = setting(None, "Dropout on the LoRA input.", aliases=["--dropout"])
    batch_size: int | None = setting(None, "Blocks per optimizer step (per device).")
    gradient_accumulation: int = setting(1, "Micro-batches accumulated per optimizer step.")
    devices: int = setting(
        1,
        "Processes to train on, data parallel: one per GPU, or CPU processes (gloo) without one. Above 1, "
        "`kinject train` starts itself under `accelerate launch`; the global batch is batch_size x devices, and the "
        "run folder, checkpoints and resume are the same.",
    )
    target_modules: str = setting(
        "all-linear", "Layers that get LoRA: 'all-linear' or a comma-separated list of names."
    )
    quantization: Quantization = setting(
        "auto", "'4bit' (QLoRA nf4 + double quant), 'none', or 'auto' (4bit on CUDA, none on CPU)."
    )
    gradient_checkpointing: Switch = setting(
        "auto",
        "'on', 'off' or 'auto': off when the step's activations fit in the free memory (the GPU's, else the "
        "machine's RAM), since recomputing them costs a third of the step; on when they would not.",
    )
    cpu_bf16: Switch = setting(
        "auto",
        "bf16 autocast when training on a CPU: 'auto' where the CPU has bf16 matrix units (Intel AMX), where it "
        "is faster than fp32 and the loss curve stays within noise; 'off': fp32. A GPU trains in bf16/fp16 always.",
    )
    warmup_ratio: float = setting(0.1, "Share of steps with linearly rising learning rate.")
    lr_scheduler: Scheduler | None = setting(
        None,
        "Learning-rate schedule after warmup: 'linear' decays to 0 by the last step, so the last steps settle what "
        "was learnt instead of drifting further; 'constant_with_warmup' holds the peak.",
    )
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.")
    save_steps: int = setting(50, "Write a resumable checkpoint every N steps.")
    seed: int = setting(42, "Seed for LoRA init, data order and which rows share a training block.")
    eval_at_end: bool = setting(
        False, "Evaluate base vs adapter when training ends (the app turns it on).", aliases=["--eval"]
    )
    replay_loss: ReplayLoss | None = setting(
        None,
        "Loss on replay tokens: 'ce' (the base's answers as targets) or 'kl' (KL(base || adapter) on them, the "
        "base's whole next-token distribution as a soft target; one more forward pass per block with replay).",
    )
    kl_weight: float | None = setting(
        None,
        "With replay_loss 'kl': the weight of the KL term on replay tokens against the loss on the corpus's tokens "
        "(higher holds the general answers closer to the base's, at some cost in what is learnt; unset: the "
        "preset's, else 1).",
    )
    guard_checks: int | None = setting(
        None,
        "Forgetting guard: how many times, evenly spread over training, to measure KL(base || adapter) on fixed "
        "general prompts and the answers' likelihood on held-out questions about the corpus, keeping an adapter "
        "within --guard-kl-max (which one: --guard-keep; 0: off).",
    )
    guard_kl_max: float = setting(
        0.1, "Forgetting guard: the KL bound (nats per token); the adapter kept is one within it (--guard-keep)."
    )
    guard_patience: int = setting(
        0, "Forgetting guard: stop early after this many checks without a better adapter within the bound (0: never)."
    )
    guard_keep: GuardKeep = setting(
        "latest",
        "Forgetting guard: which adapter within the bound to keep: 'latest' (the most trained; the guard only undoes "
        "drift) or 'best' (the highest likelihood of the pages' sentences, a proxy that can prefer an early step).",
    )
    report_to: ReportTo = setting(
        "trackio",
        "Where the curves go (loss, learning rate, tokens/s, the guard's checks, the data report's counts, then the "
        "evaluation's scores): 'trackio' (a local dashboard: `trackio show --project kinject` with TRACKIO_DIR set "
        "to the tracking folder under KINJECT_HOME, or KINJECT_TRACKING; nothing leaves the machine), "
        "'tensorboard' (event files in the run's tensorboard/ folder) or 'none'. The evaluation follows the "
        "training's choice.",
    )

    def __post_init__(self) -> None:
        check_choice(self.preset, "preset", PresetName)
        by_exposures = self.fact_exposures is not None and self.epochs is None  # asked for, epochs not given
        for key, value in PRESETS[self.preset].get("train", {}).items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if by_exposures:
            self.epochs = None  # the preset's epochs would otherwise override the exposures asked for
        if self.kl_weight is None:
            self.kl_weight = 1.0
        require(
            self.fact_exposures is None or self.fact_exposures > 0,
            "fact_exposures",
            f"must be > 0, got {self.fact_exposures}",
        )
        require(
            self.epochs is not None or self.fact_exposures is not None,
            "epochs",
            "set epochs or fact_exposures",
        )
        require(self.epochs is None or self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        require(0 < self.learning_rate < 1, "learning_rate", f"must be within (0, 1), got {self.learning_rate}")
        require(self.lora_r >= 1, "lora_r", f"must be >= 1, got {self.lora_r}")
        require(self.lora_alpha >= 1, "lora_alpha", f"must be >= 1, got {self.lora_alpha}")
        require(0 <= self.lora_dropout < 1, "lora_dropout", f"must be within [0, 1), got {self.lora_dropout}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.gradient_accumulation >= 1, "gradient_accumulation", "must be >= 1")
        check_choice(self.quantization, "quantization", Quantization)
        check_choice(self.gradient_checkpointing, "gradient_checkpointing", Switch)
        check_choice(self.cpu_bf16, "cpu_bf16", Switch)
        require(self.devices >= 1, "devices", f"must be >= 1, got {self.devices}")
        check_choice(self.lr_scheduler, "lr_scheduler", Scheduler)
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be within [0, 1)")
        require(self.save_steps >= 1, "save_steps", f"must be >= 1, got {self.save_steps}")
        check_seed("seed", self.seed)
        check_choice(self.replay_loss, "replay_loss", ReplayLoss)
        require(self.kl_weight > 0, "kl_weight", f"must be > 0, got {self.kl_weight}")
        require(self.guard_checks >= 0, "guard_checks", f"must be >= 0, got {self.guard_checks}")
        require(self.guard_kl_max > 0, "guard_kl_max", f"must be > 0, got {self.guard_kl_max}")
        check_choice(self.guard_keep, "guard_keep", GuardKeep)
        check_choice(self.report_to, "report_to", ReportTo)
        require(self.guard_patience >= 0, "guard_patience", f"must be >= 0, got {self.guard_patience}")
