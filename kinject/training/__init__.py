"""Training (stage: train): the orchestration of a run's training (``pipeline``: load, augment, pack, guard, train,
records, then the evaluation when asked), the loop (``loop``: LoRA / QLoRA through transformers' Trainer), the
losses, the length (``budget``), the speed choices (``speed``), the forgetting guard (``guard``), several processes
(``processes`` inside them, ``launch`` to start them), recipe variants compared (``ablate``) and a training as a
background job (``job``).

May import: ``kinject.eval`` (the guard measures with evaluation's scorer), ``kinject.corpus``,
``kinject.augment``, ``kinject.models``, ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""
