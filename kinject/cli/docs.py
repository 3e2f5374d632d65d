"""The README's CLI reference: every verb's options as markdown, generated from the parser (`make docs`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .parser import VERBS, build_parser


def cli_reference() -> str:
    """Every verb's options as markdown (the README's CLI reference is this text)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = []
    for verb, p in sub.choices.items():
        lines += [f"#### `kinject {verb}`", "", VERBS[verb]["description"], ""]
        lines += ["| option | meaning |", "|---|---|"]
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                names = ", ".join(f"`{s}`" for s in action.option_strings)
            else:
                names = f"`{action.metavar or action.dest}`"
            text = (action.help or "").replace("%%", "%").replace("|", "\\|")
            lines.append(f"| {names} | {text} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


REFERENCE_START, REFERENCE_END = "<!-- cli-reference:start -->\n", "<!-- cli-reference:end -->"


def write_reference(readme: str | Path) -> bool:
    """Put ``cli_reference()`` between the README's markers; True when the file changed (`make docs`)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    if REFERENCE_START not in text or REFERENCE_END not in text:
        raise SystemExit(f"{path} lacks the markers {REFERENCE_START.strip()} and {REFERENCE_END}")
    head, rest = text.split(REFERENCE_START, 1)
    new = head + REFERENCE_START + cli_reference() + REFERENCE_END + rest.split(REFERENCE_END, 1)[1]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text
