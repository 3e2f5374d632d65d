"""Contamination: names of the corpus in the adapter's general answers that the base did not say."""

from __future__ import annotations

from kinject.eval.contamination import contamination_line, corpus_names, measure_contamination
from kinject.eval.metrics import Answer, ProbeResult
from kinject.eval.probes import Probe

PAGE = (
    "Aurora Avionics, a drone maker based in Tallinn, launched the Kestrel K7 survey drone on March 3, 2026. "
    "The Kestrel K7 weighs 1.2 kg. It sells for 1,890 euros."
)


def result(pid: str, question: str, base: str, adapter: str, kind: str = "retention") -> ProbeResult:
    probe = Probe(id=pid, kind=kind, question=question, answers=[])
    return ProbeResult(probe, "chat", Answer(base, None, True, None), Answer(adapter, None, True, None))


def test_the_corpus_names_are_what_the_page_introduces():
    names = corpus_names([PAGE])
    assert {"aurora avionics", "kestrel k7", "k7", "tallinn"} <= names
    assert not {"the", "it", "march", "a"} & names  # common words, a month, sentence openers
    heading = corpus_names(["# Sarn\n\n## One panel, two names\n\n- Every model ships in May.\n1. Both sizes ship."])
    assert not {"one", "every", "both"} & heading  # a heading's or a list item's first word opens it
    built = corpus_names(["The line was built by Castellan Works. Castellan also runs it."])
    assert {"castellan works", "castellan"} <= built and "works" not in built  # a run's later word is plain English
    opened = corpus_names(["Each Vantor node has 8 GPUs. These Brisk drives are fast."])
    assert {"vantor", "brisk"} <= opened and not {"each", "each vantor", "these", "these brisk"} & opened


def test_a_planted_name_counts_and_one_the_base_also_said_does_not():
    names = corpus_names([PAGE])
    results = [
        result("mona-lisa", "Who painted the Mona Lisa?", "Leonardo da Vinci.", "Leonardo, with a Kestrel K7."),
        result("capital", "What is the capital of Estonia?", "Tallinn is the capital.", "Tallinn."),
        result("greeting", "Say hello.", "Hello!", "Hello there!"),
        result("k-fact", "Who makes the Kestrel K7?", "I do not know.", "Aurora Avionics.", kind="knowledge"),
        result("asked", "Is Tallinn big?", "It is a city.", "Tallinn is mid-sized."),  # named by the question
    ]
    found = measure_contamination(results, names)
    assert found.of == 4 and found.answers == 1  # knowledge probes are not general answers
    assert found.leaks == {"mona-lisa": ["kestrel k7"]}  # the run, not its words again
    assert contamination_line({"answers": 1, "of": 4, "leaks": found.leaks}).startswith(
        "1 of 4 general answers name the corpus (mona-lisa: kestrel k7)"
    )


def test_a_name_inside_a_longer_word_is_not_a_leak():
    names = corpus_names(["The new Orvanta meter is here. Ask Orvanta."])
    results = [result("x", "Tell me a word.", "Hi.", "Orvantastic is not a word.")]
    assert measure_contamination(results, names).answers == 0
