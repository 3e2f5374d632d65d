"""Answer matching: does a generated answer contain an accepted alias? (the rule every accuracy here uses)."""

from __future__ import annotations

import re
import unicodedata

# A number written with thousands separators (comma, space, no-break or thin space): "3,200", "3 200", "1,234,567".
_GROUPED_NUMBER = re.compile(r"(?<![\d.])\d{1,3}(?:[,\u00a0\u202f\u2009 ]\d{3})+(?!\d)")
_ALNUM = r"[^\W_]"


def normalize_answer(text: str) -> str:
    """Lower-case text with the differences that do not change a fact taken out.

    Thousands separators go ("3,200" and "3 200" read "3200"), a zero fraction goes ("100.0" reads "100"), a unit
    glued to a number is split off ("2TB" reads "2 tb"), hyphens between words and runs of whitespace become one
    space. Applied to both the answer and the alias, so they meet on the same form.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text).replace("\u2019", "'")
    text = _GROUPED_NUMBER.sub(lambda m: re.sub(r"\D", "", m.group()), text)
    text = re.sub(r"(?<=\d)\.0+(?!\d|\.\d)", "", text)
    text = re.sub(r"(?<=\d)(?=[^\W\d_])", " ", text)
    text = re.sub(r"(?<=\w)-(?=\w)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _alias_pattern(alias: str) -> re.Pattern[str]:
    # Boundaries keep "8" from matching inside "128" or "8.5", and "eight" inside "eighteen"; a plural still counts.
    start = rf"(?<!{_ALNUM})(?<!\d\.)" if re.match(_ALNUM, alias) else ""
    if alias[-1].isdigit():
        end = r"(?!\d)(?!\.\d)"
    elif re.match(_ALNUM, alias[-1]):
        end = rf"(?:'?s|es)?(?!{_ALNUM})"
    else:
        end = ""
    return re.compile(start + re.escape(alias) + end)


def alias_position(answer: str, aliases: list[str]) -> int | None:
    """Where in ``answer`` (normalized, ``normalize_answer``) the first of ``aliases`` it states begins, or None."""
    text = normalize_answer(answer)
    found = [
        m.start() for alias in aliases if (norm := normalize_answer(alias)) if (m := _alias_pattern(norm).search(text))
    ]
    return min(found) if found else None


def match_answer(answer: str, aliases: list[str]) -> str | None:
    """The first accepted alias that ``answer`` contains (see ``normalize_answer``), or None."""
    text = normalize_answer(answer)
    for alias in aliases:
        norm = normalize_answer(alias)
        if norm and _alias_pattern(norm).search(text):
            return alias
    return None


def is_correct(answer: str, aliases: list[str]) -> bool | None:
    """Whether the answer holds an accepted alias; None for a behaviour-only probe (no aliases)."""
    if not aliases:
        return None
    return match_answer(answer, aliases) is not None
