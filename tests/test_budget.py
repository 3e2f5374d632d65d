"""The training budget: epochs follow from the exposures each fact should get, so one page and fifty pages both get
sensible step counts (kinject.training.budget), and a training asked for exposures runs what the budget says."""

from __future__ import annotations

import math

import pytest
from model_fixtures import TINY_BLOCKS

from kinject.runs import RunDir
from kinject.settings.presets import PRESETS
from kinject.settings.stages import BlocksConfig, ConfigError
from kinject.settings.training import TrainConfig
from kinject.training.budget import MAX_EPOCHS, MIN_EPOCHS, corpus_facts, exposures_per_epoch, plan_epochs

TEXT = (
    "Orvanta launched the Tidewell T2 water meter on 6 October 2026. The meter costs 129 euros and reads the flow "
    "every 15 seconds. Its battery lasts 12 years, and the device was designed in Lindqvist by Hanne Solberg.\n"
)


def page(n: int) -> dict[str, str]:
    """A short page with its own names and numbers (page ``n`` of a many-page corpus)."""
    return {
        "title": f"Product {n}",
        "text": f"Vendor{n} released the Model Z{n} router on {n % 28 + 1} March 2026. It costs {100 + n} euros and "
        f"serves {10 + n} rooms. The router was designed in Town{n} by Engineer Name{n}.",
    }


class QA:
    """Kept question-answer rows (the shape ``plan_epochs`` reads from an augmentation): (passage id, answer)."""

    def __init__(self, answers: list[tuple[str, str]]):
        self.rows = {"qa": [{"passage": p, "answer": a, "kept": True} for p, a in answers]}

    def kept(self, kind: str) -> list[dict]:
        return self.rows.get(kind, [])


RAW_QA = BlocksConfig(text_format="raw", use_qa=True)


def test_facts_are_found_and_counted_where_they_are_stated():
    docs = [{"title": "T2", "text": TEXT}]
    facts = corpus_facts(docs)
    assert {"129 euros", "12 years", "Hanne Solberg"} <= {f for _, _, f in facts}  # a currency is part of its fact
    n, raw_only = exposures_per_epoch(docs, BlocksConfig(text_format="raw"))
    assert n == len(facts) and raw_only == 1.0  # the page states each fact once
    sentences = sorted({(p, s) for p, s, _ in facts})
    _, with_qa = exposures_per_epoch(docs, RAW_QA, QA(sentences * 3))  # three answers restate each sentence
    assert with_qa == pytest.approx(4.0)
    _, none_qa = exposures_per_epoch(docs, BlocksConfig(text_format="none", use_qa=True), QA(sentences))
    assert none_qa == pytest.approx(1.0)  # the page left out: only the answers count
    elsewhere = [("d9p9", s) for _, s in sentences]  # the same words under another passage restate nothing here
    assert exposures_per_epoch(docs, RAW_QA, QA(elsewhere))[1] == pytest.approx(1.0)


def test_one_page_and_fifty_pages_get_the_same_passes_and_steps_that_grow_with_the_facts():
    one = [page(1)]
    fifty = [page(n) for n in range(1, 51)]

    def answers(docs):
        return QA(sorted({(p, s) for p, s, _ in corpus_facts(docs)}) * 2)

    small = plan_epochs(None, 30, one, RAW_QA, answers(one))
    large = plan_epochs(None, 30, fifty, RAW_QA, answers(fifty))
    assert small.epochs == pytest.approx(large.epochs, rel=0.05)  # the passes follow the facts' density
    assert large.facts >= 45 * small.facts
    assert MIN_EPOCHS <= small.epochs <= MAX_EPOCHS
    # Steps at batch 1 and ~1 block per page: a page gets several passes (not the 2-3 steps of 2.5 epochs), fifty
    # pages get proportionally more steps but no more passes.
    assert math.ceil(1 * small.epochs) >= 5 and math.ceil(50 * large.epochs) <= 50 * MAX_EPOCHS
    assert "exposures" in small.reason and f"{small.facts} facts" in small.reason


def test_the_budget_is_bounded_and_epochs_given_win():
    docs = [page(1)]
    assert plan_epochs(None, 10_000, docs, RAW_QA, QA([])).epochs == MAX_EPOCHS
    assert plan_epochs(None, 0.01, docs, RAW_QA, QA([])).epochs == MIN_EPOCHS
    given = plan_epochs(3.0, 30, docs, RAW_QA, QA([]))
    assert given.epochs == 3.0 and given.fact_exposures is None and "as set" in given.reason
    nothing = plan_epochs(None, 30, [{"title": "x", "text": "plain words without any fact at all here."}], RAW_QA)
    assert nothing.facts == 0 and nothing.epochs == MAX_EPOCHS and "no fact" in nothing.reason


def test_the_knowledge_preset_sizes_by_exposures_and_epochs_or_other_presets_override():
    assert "fact_exposures" in PRESETS["knowledge"]["train"] and "epochs" not in PRESETS["knowledge"]["train"]
    default = TrainConfig()
    assert default.epochs is None and default.fact_exposures == PRESETS["knowledge"]["train"]["fact_exposures"]
    assert TrainConfig(epochs=2).epochs == 2  # given epochs win over the preset's exposures
    assert TrainConfig(preset="cpu-demo").fact_exposures is None and TrainConfig(preset="cpu-demo").epochs == 20
    asked = TrainConfig(preset="cpu-demo", fact_exposures=40)  # asked for: the preset's epochs do not apply
    assert asked.epochs is None and asked.fact_exposures == 40
    with pytest.raises(ConfigError, match="fact_exposures"):
        TrainConfig(fact_exposures=0)


def test_a_training_runs_the_budgets_steps_and_records_it(tiny_run):
    from kinject.training.pipeline import train

    result = train(
        tiny_run,
        TrainConfig(preset="cpu-demo", fact_exposures=6, quantization="none", guard_checks=0),
        blocks=TINY_BLOCKS,
    )
    run = RunDir(tiny_run)
    meta = run.read_adapter_meta()
    budget = meta["budget"]
    docs = run.load_corpus().to_list()
    facts, per_epoch = exposures_per_epoch(docs, TINY_BLOCKS)
    assert budget["facts"] == facts > 0 and budget["exposures_per_epoch"] == pytest.approx(per_epoch, abs=1e-3)
    assert budget["epochs"] == pytest.approx(min(max(6 / per_epoch, MIN_EPOCHS), MAX_EPOCHS), abs=1e-3)
    (packed,) = run.blocks_infos()  # prepare packed TINY_BLOCKS, and training used them
    assert result.total_steps == math.ceil(packed["stats"]["blocks"] * budget["epochs"]) > 1
    assert result.total_steps == meta["total_steps"] and result.step == result.total_steps
