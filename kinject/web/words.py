"""How the app words what it shows: a verb's CLI hints as the app's own controls, and durations for people."""

from __future__ import annotations

import re

from kinject.settings.fields import describe_fields
from kinject.settings.resolve import VERB_SECTIONS

# --- Messages that name the app's controls -------------------------------------------------------------------------
# The verbs' messages speak to a CLI user; in the app each hint becomes the control that does the same.
_APP_PHRASES = [
    (
        r"choose another --out or pass --force to replace it",
        "choose another Run name, or tick “Replace an existing run of that name” (Prepare tab)",
    ),
    (r"rerun `kinject prepare --force`", "prepare it again with “Replace an existing run of that name” ticked"),
    (r"(?:create it with |run )?`kinject prepare`( first)?", "prepare it first (Prepare tab)"),
    (r"train it first \(`kinject train [^`]*`\)", "train it first (Start, Train tab)"),
    (r"`kinject train [^`]*`", "the Train tab"),
    (r"`kinject merge`", "the Merge button (Runs tab)"),
    (r"(?:resume )?with --resume|--resume", "press Resume (Train tab)"),
    (r"--preset ([\w-]+)", r"Preset “\1” (Train tab)"),
]


_LABELS = {"urls": "URLs", "files": "Files"}  # controls whose label is not the field's name capitalised


def _control(match: re.Match) -> str:
    """A CLI option as the app control of the same field: "--no-use-qa" -> “Use qa” (untick it), "--replay-share 0"
    -> set “Replay share” to 0; an option that is no field stays as it is."""
    option, value = match.group(1), match.group(2)
    negated = option.startswith("no-")
    name = option[3 if negated else 0 :].replace("-", "_")
    infos = {i.name: i for sections in VERB_SECTIONS.values() for c in sections.values() for i in describe_fields(c)}
    if name not in infos:
        return match.group(0)
    label = f"“{_LABELS.get(name, name.replace('_', ' ').capitalize())}”"
    if infos[name].kind == "bool":
        return f"{label} ({'untick' if negated else 'tick'} it)" + (f" {value}" if value else "")
    return f"set {label} to {value}" if value else label


def app_text(message: str) -> str:
    """A verb's message with its CLI hints replaced by the app's controls (see ``_APP_PHRASES``)."""
    for pattern, replacement in _APP_PHRASES:
        message = re.sub(pattern, replacement, message)
    return re.sub(r"--([a-z][a-z0-9-]*)(?: ([^\s,;)-][^\s,;)]*))?", _control, message)


def duration_text(value: float | None) -> str:
    """A duration for people: "45 s", "12 min", "2 h 5 min"."""
    if value is None:
        return ""
    s = round(value)
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round(s % 3600 / 60)} min"
