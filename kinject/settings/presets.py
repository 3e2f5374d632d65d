"""Presets: named training recipes, one mapping per config section they set.

``TrainConfig`` (``kinject.settings.training``) fills its fields left as None from a preset's "train" part; a training
asks for blocks packed with its "blocks" part (``kinject.settings.resolve.training_blocks``). Every value can still be
overridden field by field. Plain data, so the declarations, the CLI's help and the app's preset picker all read it.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

PresetName = Literal["knowledge", "cpu-demo", "case-study"]

_RAW = {"text_format": "raw", "use_paraphrases": False, "use_qa": False, "replay_share": 0.0}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Chosen on bench/data/dev (pages nobody tuned on; docs/recipe.md has the table), checked on the other bench
    # sets: the questions made for every fact, as chat turns alone (no raw pages: they taught more facts but the
    # general answers followed the pages), packed into blocks, each fact seen 48 times, at a peak learning rate of
    # 1e-3 decaying linearly to 0 (3e-4 held constant left a one-page training too few steps to learn its values;
    # 1e-3 held constant drifted past KL 0.05 on longer ones); two fifths of the tokens replay the base's own answers
    # with KL(base || adapter) weighted 4 times. The guard keeps the latest adapter within its KL bound (the
    # sentence-likelihood proxy of "best" kept an early step that knew fewer facts).
    "knowledge": {
        "train": {
            "lora_r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "learning_rate": 1e-3,
            "lr_scheduler": "linear",
            "fact_exposures": 48,
            "batch_size": 1,
            "replay_loss": "kl",
            "kl_weight": 4.0,
            "guard_checks": 4,
        },
        "blocks": {"block_size": 512, **_RAW, "text_format": "none", "use_qa": True, "replay_share": 0.4},
    },
    # Minutes on 2 CPU cores for one page on the bundled 135M model: raw text visibly injects its facts, at a cost in
    # forgetting that the guard would refuse (it would keep an early, barely trained step), so the guard is off.
    "cpu-demo": {
        "train": {
            "lora_r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.05,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant_with_warmup",
            "epochs": 20,
            "batch_size": 1,
            "replay_loss": "ce",
            "guard_checks": 0,
        },
        "blocks": {"block_size": 512, **_RAW},
    },
    # The recipe of the case study this project follows (LLaMA2-13b-chat, AWS Summit NYC 2023 pages; raw text, no
    # guard).
    "case-study": {
        "train": {
            "lora_r": 64,
            "lora_alpha": 16,
            "lora_dropout": 0.1,
            "learning_rate": 2e-4,
            "lr_scheduler": "constant_with_warmup",
            "epochs": 20,
            "batch_size": 2,
            "replay_loss": "ce",
            "guard_checks": 0,
        },
        "blocks": {"block_size": 2048, **_RAW},
    },
}
DEFAULT_PRESET = "knowledge"
assert set(typing.get_args(PresetName)) == set(PRESETS), "PresetName must list the PRESETS"

# The fields some preset sets, by section: left unset, they take the preset's value.
PRESET_FIELDS = {
    section: sorted({k for p in PRESETS.values() for k in p.get(section, {})}) for section in ("train", "blocks")
}
