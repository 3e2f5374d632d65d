"""Sharing: a run's adapter on the Hugging Face Hub with its model card (``publish``, ``card``), the adapter
merged into a 16-bit copy of its base (``merge``) for TGI, and the merged model or the adapter alone as GGUF with an
Ollama Modelfile (``export``: ``gguf_model`` writes a model's file from ``gguf_tensors`` and ``gguf_tokenizer``,
``gguf_lora`` the adapter's, ``modelfile`` the Modelfile) for llama.cpp and Ollama.

May import: ``kinject.eval`` (the card's scores), ``kinject.sources`` (the card's judgement of an address),
``kinject.models``, ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""
