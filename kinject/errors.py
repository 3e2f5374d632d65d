"""The one mark of an expected failure: the CLI prints its message as one line (no traceback) and exits 1."""


class KinjectError(Exception):
    """A failure kinject foresaw, whose message says what happened and what to do (a stage's error subclasses it
    beside its builtin base, e.g. ``ConfigError(KinjectError, ValueError)``)."""
