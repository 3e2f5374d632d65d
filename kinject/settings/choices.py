"""The values a setting may take, one ``Literal`` each: the CLI's choices, the app's dropdowns and the check that a
run's config.yaml names one of them (``declare.check_choice``)."""

from __future__ import annotations

from typing import Literal

TextFormat = Literal["raw", "chat", "both", "none"]
Packing = Literal["blocks", "rows"]
QATarget = Literal["answer", "teacher", "both"]
GeneratorSource = str  # "base" or an endpoint URL
AnswerSource = Literal["fact", "one-fact", "sentence", "clause", "generator", "distill"]
ReplayLoss = Literal["ce", "kl"]
Quantization = Literal["auto", "4bit", "none"]
Switch = Literal["auto", "on", "off"]
Scheduler = Literal["constant_with_warmup", "cosine", "linear"]
GuardKeep = Literal["latest", "best"]
ReportTo = Literal["trackio", "tensorboard", "none"]
