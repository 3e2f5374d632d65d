"""The passages of a corpus and the facts augmentation asks about in them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .facts import is_specific, name_spans, numeric_spans, paragraphs, sentences
from .filters import normalized

MIN_PASSAGE_WORDS = 12


@dataclass
class Passage:
    """A paragraph (short ones merged with the next) of one corpus document."""

    id: str
    source: str
    title: str
    text: str
    heading: str = ""  # the section heading above it, without its "#" marks ("" when none)


_HEADING = re.compile(r"^#{1,6}\s+")
_HEADING_LINE = re.compile(r"^(#{1,6}[ \t]+\S.*)$", re.M)


def split_passages(documents: list[dict[str, Any]]) -> list[Passage]:
    """The passages of the corpus documents (``text``, ``source``, ``title``); anything shorter than
    MIN_PASSAGE_WORDS is joined to the next. The title and markdown headings ("## Nimbus 12") are never part of a
    passage's text (merged, "## Nimbus 12 The Nimbus 12 weighs 1.1 kg." became an answer the model learnt to open
    general answers with); a passage keeps the heading above it."""
    found = []
    for d, doc in enumerate(documents):
        pending, heading, k = "", "", 0
        source, title = doc.get("source", ""), doc.get("title", "")
        # A heading line is a paragraph of its own, even with no blank line before or after it.
        for para in paragraphs(_HEADING_LINE.sub("\n\\1\n", doc["text"] or "")):
            if para.strip() == (title or "").strip():
                continue
            if _HEADING.match(para):
                heading = _HEADING.sub("", para).strip()
                continue
            pending = f"{pending} {para}".strip()
            if len(pending.split()) >= MIN_PASSAGE_WORDS:
                k += 1
                found.append(Passage(f"d{d + 1}p{k}", source, title, pending, heading))
                pending = ""
        if pending and len(pending.split()) >= 3:
            found.append(Passage(f"d{d + 1}p{k + 1}", source, title, pending, heading))
    return found


def facts_of(sentence: str) -> list[str]:
    """The facts a sentence can be asked about: its dates and numbers, then its specific names."""
    seen, facts = set(), []
    for span in [*numeric_spans(sentence), *name_spans(sentence)]:
        key = normalized(span.text)
        if key and key not in seen and len(sentence[: span.start].split()) >= 1:
            seen.add(key)
            facts.append(span.text)
    return facts


def asked_sentences(text: str) -> list[str]:
    """The sentences of a passage that questions are asked about: whole sentences of five words or more."""
    return [s for s in sentences(text) if len(s.split()) >= 5 and s.endswith((".", "!", "?"))]


def sentence_subject(sentence: str) -> str:
    """The first specific name a sentence states in its first half (what it is about), or ""."""
    names = name_spans(sentence)
    return names[0].text if names and names[0].start < len(sentence) // 2 else ""


# A page's title is often a headline ("Amazon EC2 P5 instances are now generally available"), and "What can you
# tell me about <a headline>?" is no question anyone asks. The rule, on the title's longest part between " | " or
# " - " (not the site's name, not a "New -" prefix):
# - every word capitalized or with a digit (or a word Title Case leaves lower-case, such as "of"): a name when it has
#   at most SUBJECT_MAX_WORDS words and no headline mark (an opening "Announcing" or "How", a "?", "!" or ":"), and
#   the title is the subject; else a Title Case headline, and it gives no subject;
# - else a headline in sentence case (its verb is lower-case): its first specific name is the subject
#   ("Amazon EC2 P5"), or none when it has none.
# A sentence that names nothing itself then asks about its passage's first name (``topic_of``).
SUBJECT_MAX_WORDS = 5
SITE_NAME_MAX_WORDS = 4  # a title's last part of at most this many words, after " | " or " - ", is the site's name
_HEADLINE_OPENERS = frozenset(
    "Announcing Introducing Launching Unveiling Meet New Now How Why What When Where Who Which Welcome".split()
)
# The words Title Case leaves in lower case (and "de", "von" of names).
_JOINING_WORDS = frozenset(
    "a an and as at but by de for from in into nor of on or per the to via von vs with &".split()
)
_SITE_SUFFIX = re.compile(r"\s+[|\u2013\u2014-]\s+")  # " | ", " – ", " — ", " - " before a site's name


def title_subject(title: str) -> str:
    """A title as the subject of template questions (see the rule above), or "" when it gives none."""
    parts = _SITE_SUFFIX.split((title or "").strip())
    if len(parts) > 1 and len(parts[-1].split()) <= SITE_NAME_MAX_WORDS:  # "Llama 3 | Meta AI Blog": not the blog
        parts = parts[:-1]
    main = max(parts, key=len).strip().rstrip(".")
    words = main.split()
    capitalized = {w for w in words if re.search(r"[A-Z0-9]", w)}
    headline = bool(words) and (words[0] in _HEADLINE_OPENERS or main.endswith(("?", "!")) or ":" in main)
    if all(w in capitalized or w.lower() in _JOINING_WORDS for w in words):  # a name, or a Title Case headline
        return main if words and not headline and len(words) <= SUBJECT_MAX_WORDS else ""
    for span in name_spans(main):  # a headline in sentence case: its runs of capitals are names
        name = span.text.split()
        while name and name[0] in _HEADLINE_OPENERS:
            name = name[1:]
        if is_specific(" ".join(name)):
            return " ".join(name)
    return ""


def topic_of(sentence: str, title: str, passage: str = "", heading: str = "") -> str:
    """What a sentence is about, for template questions: its first specific name, else its section's heading when
    that is a specific short name ("Nimbus 12", not "Availability"), else its document's title when that is a
    short name (``title_subject``), else the first specific name of its passage, then of its title; "" when none
    gives one (no template question then).

    The passage's name keeps a template question for sentences under a headline title: dropping them all cost
    facts (bench/data/lookalikes, docs/results.md)."""
    section = title_subject(heading)
    if not is_specific(section):
        section = ""
    for subject in (sentence_subject(sentence), section, title_subject(title)):
        if subject:
            return subject
    for text in (passage, title):
        names = name_spans(text)
        if names:
            return names[0].text
    return ""
