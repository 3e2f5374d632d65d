"""Runtime: the mechanisms every stage runs on, knowing no stage: background jobs (``jobs``, the one owner of
long-running threads, their state mirrored into the run they work on), progress callbacks (``progress``) and the mark
of an expected failure (``errors``).

May import: nothing of kinject outside this package.
"""
