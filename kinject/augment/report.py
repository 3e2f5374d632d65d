"""The training data's quality, before any training: what the kept questions ask, fact by fact.

A recipe fails first in its data: a fact nobody asks about is not learnt, a question answered with a sentence that
does not state what it asks teaches the wrong thing, and one sentence answering many questions about several facts
teaches reciting it. ``data_report`` counts each of these from the rows augmentation kept (and the user's own
pairs), and names every fact that has no question, with its sentence.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .filters import normalized
from .passages import Passage
from .qa import fact_aliases, page_facts

WELL_ASKED = 6  # questions a fact should have: the phrasings a fact needs to be answerable, not only recited


def data_report(qa_rows: list[dict[str, Any]], user_rows: list[dict[str, Any]], passages: list[Passage]) -> dict:
    """The report (plain data, saved as the run's ``data-report.json``) of ``qa_rows`` and ``user_rows``."""
    from .matching import match_answer

    facts = page_facts(passages)
    kept = [r for r in qa_rows if r.get("kept")]
    per_fact: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    mismatched = []
    for row in kept:
        if not row.get("fact"):
            continue
        if match_answer(row["answer"], fact_aliases(row["fact"])) is None:
            mismatched.append(row)
        else:
            per_fact[(row["passage"], normalized(row["fact"]))].append(row)
    user_cover: dict[tuple[str, str], int] = defaultdict(int)
    for fact in facts:
        key = (fact.passage.id, normalized(fact.text))
        user_cover[key] = sum(match_answer(u["answer"], fact_aliases(fact.text)) is not None for u in user_rows)
    facts_out, seen = [], set()
    for fact in facts:
        key = (fact.passage.id, normalized(fact.text))
        if key in seen:
            continue
        seen.add(key)
        rows = per_fact.get(key, [])
        facts_out.append(
            {
                "fact": fact.text,
                "kind": fact.span.kind,
                "source": fact.passage.source,
                "sentence": fact.sentence,
                "questions": len(rows),
                "yours": user_cover[key],
                "phrasings": sorted({r["origin"] for r in rows}),
                "answer": rows[0]["answer"] if rows else "",
                "examples": [r["question"] for r in rows[:3]],
            }
        )
    by_answer: dict[str, set[str]] = defaultdict(set)
    questions_on: dict[str, int] = defaultdict(int)
    for row in kept:
        answer = normalized(row["answer"])
        questions_on[answer] += 1
        by_answer[answer].add(normalized(row.get("fact") or "") or f"(about {row['question']})")
    multi = {a: f for a, f in by_answer.items() if len(f) > 1}
    origins: dict[str, int] = defaultdict(int)
    for row in kept:
        origins[row.get("origin", "")] += 1
    unasked = [f for f in facts_out if not f["questions"] and not f["yours"]]
    return {
        "facts": len(facts_out),
        "asked": sum(1 for f in facts_out if f["questions"] or f["yours"]),
        "well_asked": sum(1 for f in facts_out if f["questions"] + f["yours"] >= WELL_ASKED),
        "well_asked_at": WELL_ASKED,
        "questions": len(kept),
        "by_origin": dict(sorted(origins.items())),
        "about_no_fact": sum(1 for r in kept if not r.get("fact")),
        "mismatched": len(mismatched),
        "mismatched_examples": [
            {"question": r["question"], "fact": r["fact"], "answer": r["answer"]} for r in mismatched[:5]
        ],
        "answers": len(questions_on),
        "answers_shared": sum(1 for n in questions_on.values() if n > 1),
        "answers_most_questions": max(questions_on.values(), default=0),
        "answers_of_several_facts": len(multi),
        "yours": len(user_rows),
        "yours_warned": sum(1 for u in user_rows if u.get("warning")),
        "unasked": [{"fact": f["fact"], "sentence": f["sentence"], "source": f["source"]} for f in unasked],
        "per_fact": facts_out,
    }


def format_report(report: dict[str, Any], most: int = 20) -> str:
    """The report as markdown: the counts, then every fact without a question and the facts asked least."""
    lines = [
        f"**{report['facts']} facts** found in the pages; {report['asked']} asked by at least one kept question, "
        f"{report['well_asked']} by {report['well_asked_at']} or more.",
        f"- {report['questions']} kept questions"
        + (f" ({', '.join(f'{k} {v}' for k, v in report['by_origin'].items())})" if report["by_origin"] else ""),
        f"- {report['mismatched']} kept questions answered with a sentence that does not state the fact they ask"
        + (f"; {report['about_no_fact']} ask about a subject, not a fact" if report["about_no_fact"] else ""),
        f"- {report['answers']} distinct answers; {report['answers_shared']} serve more than one question (at most "
        f"{report['answers_most_questions']}), {report['answers_of_several_facts']} serve questions about more than "
        "one fact",
    ]
    if report["yours"]:
        warned = f", {report['yours_warned']} with a warning" if report["yours_warned"] else ""
        lines.append(f"- {report['yours']} question-answer pairs of your own{warned}")
    if report["unasked"]:
        lines.append(f"\n**No question asks for {len(report['unasked'])} facts:**")
        lines += [f'- {f["fact"]}: "{f["sentence"]}"' for f in report["unasked"][:most]]
        if len(report["unasked"]) > most:
            lines.append(f"- ... and {len(report['unasked']) - most} more (data-report.json has them all)")
    few = sorted(
        (f for f in report["per_fact"] if 0 < f["questions"] < report["well_asked_at"]), key=lambda f: f["questions"]
    )
    if few:
        lines.append(
            f"\n**Asked fewer than {report['well_asked_at']} times:** "
            + ", ".join(f"{f['fact']} ({f['questions']})" for f in few[:most])
        )
    return "\n".join(lines)
