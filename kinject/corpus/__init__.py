"""Corpus and blocks (stage: corpus): extracted text cleaned and deduplicated into the run's corpus (``clean``), the
corpus and its augmentation tokenized and packed into training blocks (``blocks``), and ``prepare``, the verb that
goes from sources to blocks.

May import: ``kinject.sources``, ``kinject.augment``, ``kinject.models``, ``kinject.runs``, ``kinject.settings``,
``kinject.runtime``.
"""
