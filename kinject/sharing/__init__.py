"""Sharing: a run's adapter on the Hugging Face Hub with its model card (``publish``, ``card``), the adapter
merged into a 16-bit copy of its base (``merge``) for TGI, and the merged model as GGUF with an Ollama Modelfile
(``export``: ``gguf_llama`` writes the file, ``modelfile`` the Modelfile) for llama.cpp and Ollama.

May import: ``kinject.eval`` (the card's scores), ``kinject.sources`` (the card's judgement of an address),
``kinject.models``, ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""
