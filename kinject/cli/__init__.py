"""The terminal face, ``python -m kinject <verb>``: the parser generated from the settings (``parser``), the verbs
run and their outcome printed (``main``), and the README's CLI reference generated from the parser (``docs``).

May import: every stage and layer below it; never ``kinject.web``.
"""
