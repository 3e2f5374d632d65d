"""Runtime: the mechanisms every stage runs on, knowing no stage: background jobs (``jobs``, the one owner of
long-running threads, their state mirrored into the run they work on), progress callbacks (``progress``), experiment
tracking (``tracking``: trackio, TensorBoard or nothing, behind one small interface) and the mark of an expected
failure (``errors``).

May import: nothing of kinject outside this package.
"""
