"""kinject: teach an already chat-tuned LLM new facts from a handful of web pages, without it forgetting how to chat.

One package per stage or layer; imports only go down, and each package's docstring says what it may import:

- faces: ``cli`` (the terminal) and ``web`` (the gradio app), which call the same verbs and never each other;
- verbs: ``training``, ``serving``, ``sharing`` (push, card, merge), ``eval``;
- data: ``corpus`` (clean, pack, ``prepare``), ``augment`` (facts, questions, answers, replay), ``sources``;
- ``models`` (loading, decoding, the Hub, the TGI-protocol client);
- ``runs`` (the run folder), ``settings`` (declared once, resolved once), ``runtime`` (jobs, progress, errors).
"""

__version__ = "0.1.0"
