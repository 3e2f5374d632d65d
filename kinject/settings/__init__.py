"""Settings: one documented dataclass per stage of a run (``stages``, ``sources``) and per service that is not a
run's (``services``: serve, chat, push, the app), how a setting is declared and checked (``declare``), the presets
(``presets``), field introspection and coercion (``fields``), the defaults the environment sets (``environment``), the
resolution of a verb's settings for both faces, once (``resolve``), and the command line that gives them
(``commands``).

May import: ``kinject.runtime``. What a run saved reaches it as data, never through ``kinject.runs``.
"""
