"""Sharing: a run's adapter on the Hugging Face Hub with its model card (``publish``, ``card``), and the adapter
merged into a 16-bit copy of its base (``merge``) for TGI.

May import: ``kinject.eval`` (the card's scores), ``kinject.sources`` (the card's judgement of an address),
``kinject.models``, ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""
