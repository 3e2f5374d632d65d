"""Models: where answers come from. A model resolved and loaded here (``loading``: the bundled one converted once, a
folder or a Hub id), a run's model with its adapter and the decoding of answers (``generate``), Hub ids and adapter
downloads (``hub``), and the one client of a model served elsewhere over TGI's protocol (``client``).

The low home that augmentation, evaluation, training, serving and sharing all build on.
May import: ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""
