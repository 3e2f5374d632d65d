"""Augmentation: what is generated is filtered, attributed to its passage and saved; QA pairs are chat turns with
the loss on the answer; replay takes its share of the blocks; an ablation runs end to end."""

from __future__ import annotations

import pytest
from fake_llm import fake_llm
from model_fixtures import TINY_BLOCKS

from kinject.augment import (
    Augmentation,
    answer_problem,
    ensure_augmentation,
    paraphrase_problem,
    question_problem,
    split_passages,
    teacher_answers,
)
from kinject.corpus.blocks import IGNORE_INDEX, chat_example, ensure_blocks, training_docs
from kinject.runs import RunDir
from kinject.settings.stages import AugmentConfig, BlocksConfig, ConfigError, EvalConfig, GenerationConfig
from kinject.settings.training import TrainConfig

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
    "At the AWS Summit in New York City on July 26, 2023, AWS announced the general availability of P5 instances "
    "for deep learning and high performance computing."
)
PASSAGE = TEXT.split("\n\n")[0]


# ----------------------------------------------------------------------------------------------------- filters


def test_a_paraphrase_that_changes_a_number_is_rejected():
    assert "2 tb" in paraphrase_problem(PASSAGE, PASSAGE.replace("2 TB", "4 TB").replace("Each", "Every"))


def test_a_paraphrase_that_drops_a_name_is_rejected():
    rewrite = PASSAGE.replace("NVIDIA H100 Tensor Core GPUs", "fast chips").replace("Each", "Every")
    assert "h100" in paraphrase_problem(PASSAGE, rewrite)


CURIE = (
    "Marie Curie won the Nobel Prize in Physics in 1903 together with Pierre Curie and Henri Becquerel, for their "
    "research on radiation."
)


def test_plain_names_count_too():
    # Names without digits or inner capitals: dropping one, or answering with another, is caught as well.
    assert "Henri Becquerel" in paraphrase_problem(
        CURIE, "In 1903 Marie and Pierre Curie shared the Nobel Prize in Physics with a colleague, for radiation work."
    )
    assert (
        paraphrase_problem(
            CURIE,
            "In 1903 the Nobel Prize in Physics went to Marie Curie, Pierre Curie and Becquerel for radiation work.",
        )
        == ""
    )
    assert "Albert Einstein" in answer_problem("Albert Einstein won the Nobel Prize in Physics in 1903.", CURIE)
    assert answer_problem("Marie Curie won the Nobel Prize in Physics in 1903.", CURIE) == ""


def test_a_paraphrase_that_invents_a_number_is_rejected():
    rewrite = "In short: " + PASSAGE + " They cost 12 dollars."
    assert "adds 12" in paraphrase_problem(PASSAGE, rewrite)


def test_a_faithful_paraphrase_is_kept_and_a_copy_is_not():
    rewrite = (
        "P5 instances, which deliver 3,200 Gbps of aggregate network bandwidth, run on NVIDIA H100 Tensor Core "
        "GPUs; every p5.48xlarge instance comes with 8 GPUs and 2 TB of system memory (Amazon EC2)."
    )
    assert paraphrase_problem(PASSAGE, rewrite) == ""
    assert paraphrase_problem(PASSAGE, PASSAGE) == "a copy of the passage"


def test_an_answer_not_supported_by_its_passage_is_rejected():
    assert "4 tb" in answer_problem("Each instance has 4 TB of memory.", PASSAGE)
    assert "does not use" in answer_problem("Bananas grow quickly in tropical gardens everywhere.", PASSAGE)
    assert answer_problem("It has 2 TB of system memory.", PASSAGE) == ""


@pytest.mark.parametrize(
    ("question", "problem"),
    [
        ("How much system memory does a p5.48xlarge instance have?", ""),
        ("Does it have 2 TB of system memory?", "contains its answer"),
        ("Memory of the instance.", "not a question"),
        ("Why?", "1 words"),
        ("What is the capital of France today?", "shares no word with the sentence"),
    ],
)
def test_question_filter(question, problem):
    sentence = "Each p5.48xlarge instance has 8 GPUs and 2 TB of system memory."
    assert question_problem(question, sentence, "2 TB") == problem


# ---------------------------------------------------------------------------------- generation, saved and cached


def scripted(messages: list[dict[str, str]]) -> str:
    """A teacher that is right except where a test needs it wrong."""
    last = messages[-1]["content"]
    if last.startswith("Rewrite the following text in your own words"):
        return "In other words: " + last.split("\n\n", 1)[1]
    if last.startswith("List the facts"):
        return last.split("\n\n", 1)[1].replace("2 TB", "4 TB").replace("2023", "2024")
    if last.startswith("Write one question"):
        return "What does the sentence say about these instances and their system memory?"
    if last.startswith("Answer the question"):
        passage, question = last.rsplit("\n\n", 1)
        if "memory" in question:
            return "It has 4 TB of system memory."
        return passage.split("Passage: ", 1)[1].split(". ")[0].rstrip(".") + "."  # the first sentence
    return "Fine."


@pytest.fixture
def teacher():
    with fake_llm(scripted) as server:
        yield server


def _endpoint(teacher, **kw) -> AugmentConfig:
    # The generator's own questions and fixed templates alone, answered with their sentence (no rule's questions,
    # rewordings or round trip: ``tests/test_augment_qa.py`` tests those).
    base = dict(
        generator=teacher.url,
        paraphrases_per_passage=2,
        questions_per_fact=1,
        template_questions=1,
        sentence_questions=False,
        rewrites=0,
        round_trip=False,
        answers="sentence",
    )
    return AugmentConfig(**{**base, "replay_prompts": 0, **kw})


def test_augmentation_is_filtered_attributed_and_saved(tiny_run, teacher):
    result = ensure_augmentation(tiny_run, _endpoint(teacher), ("paraphrase", "qa"))
    passages = {p.id: p for p in split_passages(RunDir(tiny_run).load_corpus().to_list())}
    paraphrases = result.rows["paraphrase"]
    assert len(paraphrases) == 2 * len(passages)
    for row in paraphrases:
        assert row["passage"] in passages and row["source"] == passages[row["passage"]].source
        if row["instruction"] == "plain":
            assert row["kept"] and row["text"].startswith("In other words: ")
        else:  # "bullets" changed a number
            assert not row["kept"] and "drops or changes" in row["reason"]
    qa = result.rows["qa"]
    assert {r["origin"] for r in qa} == {"written", "template"}
    for row in qa:
        assert row["sentence"] in passages[row["passage"]].text and row["answer"] == row["sentence"]
    assert all(r["passage_text"] == passages[r["passage"]].text for r in paraphrases)
    infos = {i["kind"]: i for i in RunDir(tiny_run).augmentation_infos()}
    assert infos["paraphrase"]["kept"] == sum(r["kept"] for r in paraphrases)
    assert infos["qa"]["generator"] == teacher.url
    assert teacher_answers(qa) is None and "teacher_answers" not in infos["qa"]  # not distilled: no count
    # Greedy requests go out as temperature 0 (left out, a server would sample at its default).
    assert any(r.get("temperature") == 0.0 for r in teacher.requests)
    assert all(r.get("temperature") is not None for r in teacher.requests)


def test_generated_answers_must_be_supported(tiny_run, teacher):
    result = ensure_augmentation(tiny_run, _endpoint(teacher, answers="generator"), ("qa",))
    answered = [r for r in result.rows["qa"] if r["origin"] == "written"]
    assert answered and not any(r["kept"] for r in answered)
    assert any(r["reason"].startswith("answer states 4 tb") for r in answered)  # "It has 4 TB": unsupported
    # The teacher answers a template question with its passage's first sentence: kept where that states a fact of
    # the template's sentence, dropped where it states none.
    templates = [r for r in result.rows["qa"] if r["origin"] == "template"]
    kept = [r for r in templates if r["kept"]]
    assert kept and all(r["answer"] in TEXT and r["answer"].rstrip(".") in r["sentence"] for r in kept)
    dropped = [r for r in templates if not r["kept"]]
    assert dropped and all(r["reason"] == "answer does not state a fact of its sentence" for r in dropped)


def test_distilled_answers_are_counted_and_none_is_dropped(tiny_run, teacher):
    result = ensure_augmentation(tiny_run, _endpoint(teacher, answers="distill"), ("qa",))
    rows = result.rows["qa"]
    asked = [r for r in rows if "teacher" in r]
    assert asked and all(r["kept"] for r in asked)  # a failed teacher answer leaves the clause, not a dropped row
    used = [r for r in asked if not r["teacher_reason"]]
    assert used and all(r["answer"] == r["teacher"] for r in used)
    assert any(r["teacher_reason"].startswith("states 4 tb") and r["answer"] != r["teacher"] for r in asked)
    info = next(i for i in RunDir(tiny_run).augmentation_infos() if i["kind"] == "qa")
    assert info["teacher_answers"] == teacher_answers(rows) == len(used)


def test_augmentation_is_generated_once(tiny_run, teacher):
    first = ensure_augmentation(tiny_run, _endpoint(teacher), ("paraphrase", "qa"))
    calls = len(teacher.requests)
    again = ensure_augmentation(tiny_run, _endpoint(teacher), ("paraphrase", "qa"))
    assert again.generated == [] and len(teacher.requests) == calls and again.rows == first.rows
    other = ensure_augmentation(tiny_run, _endpoint(teacher, paraphrases_per_passage=1), ("paraphrase", "qa"))
    assert other.generated == ["paraphrase"]  # only what the changed setting affects


def test_replay_comes_from_the_base_model(tiny_run):
    config = AugmentConfig(replay_prompts=2, augment_max_new_tokens=8)
    result = ensure_augmentation(tiny_run, config, ("replay",))
    rows = result.rows["replay"]
    assert [r["prompt_id"] for r in rows] == ["replay-01", "replay-02"]
    for row in rows:  # kept as generated, ended or cut at the limit (only an empty answer is not)
        assert row["kept"] == bool(row["answer"].strip()) and isinstance(row["ended"], bool)


def test_an_unreachable_generator_is_a_clear_error(tiny_run):
    from kinject.augment import AugmentError

    with pytest.raises(AugmentError, match="generator endpoint http://127.0.0.1:9"):
        ensure_augmentation(tiny_run, AugmentConfig(generator="http://127.0.0.1:9", replay_prompts=0), ("qa",))


# ------------------------------------------------------------------------------------------------ packing


def test_qa_pairs_are_chat_turns_with_the_loss_on_the_answer(bundled_tokenizer):
    ids, labels = chat_example("What GPUs power P5?", "NVIDIA H100 GPUs.", bundled_tokenizer)
    text = bundled_tokenizer.decode(ids)
    assert "<|im_start|>user\nWhat GPUs power P5?<|im_end|>" in text and "<|im_start|>assistant\n" in text
    answer = [t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert bundled_tokenizer.decode(answer).strip() == "NVIDIA H100 GPUs.<|im_end|>"
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in labels[:first]) and labels[first:] == ids[first:]


def _augmentation(n_qa: int = 30, n_replay: int = 5) -> Augmentation:
    qa = [{"kind": "qa", "kept": True, "question": f"Question {i} about P5?", "answer": PASSAGE} for i in range(n_qa)]
    replay = [
        {"kind": "replay", "kept": True, "question": f"General prompt {i}?", "answer": "A general answer. " * (i + 3)}
        for i in range(n_replay)
    ]
    return Augmentation({"qa": qa, "replay": replay}, {"qa": "qa-x", "replay": "replay-y"}, {}, [])


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5])
def test_replay_share_is_honoured(bundled_tokenizer, share):
    config = BlocksConfig(text_format="raw", use_qa=True, replay_share=share)
    docs = training_docs([{"text": TEXT, "title": "P5"}], config, bundled_tokenizer, _augmentation())
    replay = sum(len(d.ids) for d in docs if d.replay)
    total = sum(len(d.ids) for d in docs)
    assert abs(replay / total - share) < 0.01


def test_replay_share_holds_over_the_packed_blocks(tiny_run, bundled_tokenizer):
    config = BlocksConfig(block_size=64, text_format="raw", use_qa=True, replay_share=0.2)
    blocks, stats, _ = ensure_blocks(RunDir(tiny_run), config, bundled_tokenizer, 256, augmentation=_augmentation())
    replay = sum(sum(b["replay_mask"]) for b in blocks)
    assert replay == stats.replay_tokens and abs(replay / stats.corpus_tokens - 0.2) < 0.01
    # The questions of QA pairs carry no loss: masked tokens outside replay examples (there is no padding here).
    masked = [
        i
        for b in blocks
        for i in range(len(b["labels"]))
        if b["labels"][i] == IGNORE_INDEX and not b["replay_mask"][i]
    ]
    assert masked


def test_the_training_seed_decides_what_each_block_holds(tiny_run, bundled_tokenizer):
    run, augmentation = RunDir(tiny_run), _augmentation()
    config = BlocksConfig(block_size=64, text_format="raw", use_qa=True, replay_share=0.2)

    def pack(seed: int) -> tuple[list[list[int]], bool]:
        blocks, _, packed = ensure_blocks(run, config, bundled_tokenizer, 256, augmentation=augmentation, seed=seed)
        return [b["input_ids"] for b in blocks], packed

    one, packed = pack(1)
    two, packed_two = pack(2)
    again, packed_again = pack(1)
    assert packed and packed_two and not packed_again  # each seed its own cached blocks
    assert one == again and one != two
    assert sorted(map(tuple, one)) != sorted(map(tuple, two))  # other rows share a block, not only another order
    first = training_docs([{"text": TEXT, "title": "P5"}], config, bundled_tokenizer, augmentation, seed=1)
    same = training_docs([{"text": TEXT, "title": "P5"}], config, bundled_tokenizer, augmentation, seed=1)
    assert [d.ids for d in first] == [d.ids for d in same]
    # The corpus alone is packed in its own order, whatever the seed: one packing serves every training.
    corpus = BlocksConfig(block_size=64)
    alone, _, _ = ensure_blocks(run, corpus, bundled_tokenizer, 256, seed=1)
    other, _, packed_other = ensure_blocks(run, corpus, bundled_tokenizer, 256, seed=2)
    assert not packed_other and alone["input_ids"] == other["input_ids"]


def test_a_replayed_answer_cut_at_its_limit_gets_no_end_of_turn(bundled_tokenizer):
    ended, _ = chat_example("Hi?", "Hello there.", bundled_tokenizer)
    cut, labels = chat_example("Hi?", "Hello there.", bundled_tokenizer, ended=False)
    assert bundled_tokenizer.decode(ended).rstrip().endswith("<|im_end|>")
    assert bundled_tokenizer.decode(cut).endswith("Hello there.") and cut == ended[: len(cut)]
    assert labels[-1] == cut[-1]


def test_qa_pairs_are_not_split_across_blocks(bundled_tokenizer):
    from kinject.corpus.blocks import Doc, pack_docs

    docs = [Doc(list(range(10))), Doc(list(range(100, 108)), whole=True), Doc(list(range(200, 230)))]
    blocks, total = pack_docs(docs, block_size=16, pad_id=0)
    assert blocks[0]["input_ids"] == list(range(10))  # the whole document moved on rather than being cut
    assert blocks[1]["input_ids"][:8] == list(range(100, 108)) and total == 48


def test_blocks_that_use_augmentation_need_it(tiny_run, bundled_tokenizer):
    with pytest.raises(ValueError, match="need the run's augmentation"):
        ensure_blocks(RunDir(tiny_run), BlocksConfig(use_qa=True), bundled_tokenizer, 256)
    with pytest.raises(ValueError, match="'none' leaves nothing to train on"):
        ensure_blocks(RunDir(tiny_run), BlocksConfig(text_format="none"), bundled_tokenizer, 256)


# ---------------------------------------------------------------------------------------------------- ablation


def test_ablation_runs_end_to_end(tiny_run, teacher, monkeypatch, tmp_path):
    import math

    import kinject.augment.verb
    from kinject.training.ablate import ablate

    replay = [
        {"kind": "replay", "prompt_id": f"r{i}", "question": f"Say something {i}?", "answer": "Something. " * 6}
        for i in range(3)
    ]
    monkeypatch.setenv("KINJECT_TRACKING", str(tmp_path / "tracking"))
    # The tiny random model writes nothing usable: replay comes from a stand-in for the base's answers.
    monkeypatch.setattr(
        kinject.augment.verb,
        "generate_replay",
        lambda *a: [{**r, "ended": True, "kept": True, "reason": ""} for r in replay],
    )

    def run_ablation(variants, train=None, **kwargs):
        return ablate(
            tiny_run,
            variants,
            [1],
            train
            or TrainConfig(preset="cpu-demo", max_steps=2, learning_rate=5e-3, quantization="none", guard_checks=1),
            TINY_BLOCKS,
            _endpoint(teacher, paraphrases_per_passage=0, replay_prompts=3),
            EvalConfig(auto_probes=2, retention=False, kl_max_new_tokens=4),
            GenerationConfig(max_new_tokens=4),
            **kwargs,
        )

    # The default recipe's ingredients: QA pairs and replay trained with the KL loss.
    (recipe,) = run_ablation(["raw+qa+replay=0.3+kl"])["rows"]
    sub = RunDir(recipe["run_dir"])
    assert sub.section("train")["replay_loss"] == "kl" and sub.section("blocks")["replay_share"] == 0.3
    assert recipe["steps"] == 2 and all(math.isfinite(m["loss"]) for m in sub.read_metrics() if "loss" in m)
    assert next(i for i in sub.blocks_infos() if i["stats"]["replay_tokens"])  # replay was packed

    data = run_ablation(["raw", "raw+qa"])
    assert data["budget_steps"] == 2 and [r["variant"] for r in data["rows"]] == ["raw", "raw+qa"]
    assert all(r["steps"] == 2 and r["knowledge_scored"] == 2 and r["kl"] is not None for r in data["rows"])
    assert all(r["train_s"] > 0 for r in data["rows"])
    table = RunDir(tiny_run).ablation_markdown()
    assert "| raw+qa |" in table and "Budget: 2 optimizer steps" in table
    assert RunDir(data["rows"][1]["run_dir"]).read_adapter_meta()["step"] == 2
    from trackio.sqlite_storage import SQLiteStorage  # the variants' curves sit side by side in one project

    assert {"raw-seed1", "raw_qa-seed1"} <= set(SQLiteStorage.get_runs("run-ablation"))
    assert any("eval/adapter/knowledge_accuracy" in row for row in SQLiteStorage.get_logs("run-ablation", "raw-seed1"))

    # Run again with one more variant: the finished ones are read back (their adapters untouched), the new one trains.
    def written(row):
        return RunDir(row["run_dir"]).adapter_weights().stat().st_mtime_ns

    saved = {r["variant"]: written(r) for r in data["rows"]}
    again = run_ablation(["raw", "raw+qa", "qa"])
    assert [r["variant"] for r in again["rows"]] == ["raw", "raw+qa", "qa"]
    assert again["rows"][:2] == data["rows"]
    assert all(written(r) == saved[r["variant"]] for r in data["rows"])
    # A changed setting, or --retrain, trains again.
    redone = run_ablation(["raw"], reuse=False)["rows"][0]
    assert redone["steps"] == 2 and written(redone) != saved["raw"]
    other = TrainConfig(preset="cpu-demo", max_steps=3, learning_rate=5e-3, quantization="none", guard_checks=1)
    assert run_ablation(["raw"], train=other)["rows"][0]["steps"] == 3


def test_variant_names_are_checked():
    from kinject.training.ablate import variant_settings

    assert variant_settings("raw+qa+replay=0.1+kl") == (
        {"text_format": "raw", "use_paraphrases": False, "use_qa": True, "replay_share": 0.1},
        {"replay_loss": "kl"},
    )
    assert variant_settings("qa+replay+noguard")[1] == {"replay_loss": "ce", "guard_checks": 0}
    with pytest.raises(ConfigError, match="unknown ingredient 'qq'"):
        variant_settings("raw+qq")
    with pytest.raises(ConfigError, match="nothing to train on"):
        variant_settings("replay")


def test_the_augment_verb_keeps_its_settings_for_training(tiny_run, teacher):
    from kinject.cli.main import main, verb_configs
    from kinject.cli.parser import build_parser

    argv = ["augment", str(tiny_run), "--generator", teacher.url, "--paraphrases-per-passage", "0"]
    assert main([*argv, "--replay-prompts", "0"]) == 0
    assert RunDir(tiny_run).section("augment")["generator"] == teacher.url
    # train then uses (and finds cached) what augment generated, unless told otherwise.
    args = build_parser().parse_args(["train", str(tiny_run)])
    assert verb_configs("train", args)["augment"].generator == teacher.url


def test_the_augment_summary_counts_the_teachers_answers(tiny_run, teacher, capsys):
    from kinject.cli.main import main

    argv = ["augment", str(tiny_run), "--generator", teacher.url, "--paraphrases-per-passage", "0"]
    assert main([*argv, "--replay-prompts", "0", "--answers", "distill"]) == 0
    used = next(i for i in RunDir(tiny_run).augmentation_infos() if i["kind"] == "qa")["teacher_answers"]
    assert used and f", {used} answers by the generator" in capsys.readouterr().out
    # A cached set shows the same count.
    assert main([*argv, "--replay-prompts", "0", "--answers", "distill"]) == 0
    assert f"cached, {used} answers by the generator" in capsys.readouterr().out


def test_prepare_packs_the_pages_and_leaves_augmentation_to_training(tmp_path, tiny_model_dir):
    from kinject.cli.main import main

    page = tmp_path / "p5.md"
    page.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    argv = ["prepare", "--out", str(out), "--file", str(page), "--model", str(tiny_model_dir)]
    assert main([*argv, "--use-qa", "--replay-share", "0.2", "--text-format", "none"]) == 0
    run = RunDir(out)
    (info,) = run.blocks_infos()
    assert info["stats"]["replay_tokens"] == 0 and info["config"]["text_format"] == "raw"
    assert run.section("blocks")["use_qa"] is True and run.section("blocks")["replay_share"] == 0.2


# --------------------------------------------------------------------------- template questions' subjects


class _Silent:
    """A generator that writes nothing (template questions need none)."""

    def chat(self, conversations, max_new_tokens, temperature, seed=0):
        return ["" for _ in conversations]


class _Teacher:
    """A generator that asks by a script keyed on the fact, and answers by one keyed on the question."""

    QUESTIONS = {
        "3.6 GHz": "What is its top clock?",
        "3.2 GHz": "At what speed had the V3 peaked?",
        "2026": "When does the Quarro V4 ship?",
    }

    def __init__(self, answers: dict[str, str], default: str = "I do not know."):
        self.answers, self.default = answers, default

    def chat(self, conversations, max_new_tokens, temperature, seed=0):
        out = []
        for messages in conversations:
            last = messages[-1]["content"]
            if last.startswith("Write one question"):
                out.append(self.QUESTIONS.get(last.rsplit("Answer: ", 1)[1], "Which clock does the sentence name?"))
            else:
                out.append(self.answers.get(last.rsplit("\n\n", 1)[1], self.default))
        return out


def test_distilled_answers_are_the_teachers_where_they_state_the_fact():
    from kinject.augment import Passage, generate_qa
    from kinject.runtime.progress import Progress

    text = "Its top clock speed is 3.6 GHz, where the V3 peaked at 3.2 GHz. The Quarro V4 ships in 2026."
    passage = Passage("d1p1", "quarro.md", "Quarro V4", text)
    teacher = _Teacher(
        {
            "At what speed had the V3 peaked?": "The V3 ran at a peak clock speed of 3.2 GHz.",  # states it: used
            "When does the Quarro V4 ship?": "The Quarro V4 ships soon.",  # misses "2026": the clause stays
        }
    )
    config = AugmentConfig(
        template_questions=0,
        questions_per_fact=1,
        answers="distill",
        sentence_questions=False,
        rewrites=0,
        round_trip=False,
    )
    rows = {r["fact"]: r for r in generate_qa([passage], teacher, config, Progress())}
    assert rows["3.2 GHz"]["answer"] == "The V3 ran at a peak clock speed of 3.2 GHz."
    assert rows["3.2 GHz"]["kept"] and rows["3.2 GHz"]["teacher_reason"] == ""
    assert rows["2026"]["answer"] == "The Quarro V4 ships in 2026." and rows["2026"]["kept"]
    assert rows["2026"]["teacher"] == "The Quarro V4 ships soon."
    assert rows["2026"]["teacher_reason"] == "does not state 2026"
    # An answer with a number its passage does not state is not used either.
    teacher.answers["At what speed had the V3 peaked?"] = "The V3 peaked at 3.2 GHz in 2025."
    rows = {r["fact"]: r for r in generate_qa([passage], teacher, config, Progress())}
    assert rows["3.2 GHz"]["answer"] == "The V3 peaked at 3.2 GHz." and "2025" in rows["3.2 GHz"]["teacher_reason"]
    # Without the fallback (answers "generator"), an answer that misses its fact drops the row.
    generator = AugmentConfig(
        template_questions=0,
        questions_per_fact=1,
        answers="generator",
        sentence_questions=False,
        rewrites=0,
        round_trip=False,
    )
    rows = {r["fact"]: r for r in generate_qa([passage], teacher, generator, Progress())}
    assert not rows["2026"]["kept"] and rows["2026"]["reason"] == "answer does not state 2026"


def test_a_teachers_answer_must_be_whole_and_say_more_than_the_question():
    from kinject.augment import Passage, generate_qa
    from kinject.augment.generation import whole_sentences
    from kinject.runtime.progress import Progress

    assert whole_sentences("It ships in 2026. The price is") == "It ships in 2026."  # cut at the length limit
    assert whole_sentences('He said "it ships." Then') == 'He said "it ships."'
    assert whole_sentences("It ships in") == "" and whole_sentences(" Yes. ") == "Yes."
    text = "Its top clock speed is 3.6 GHz, where the V3 peaked at 3.2 GHz. The Quarro V4 ships in 2026."
    passage = Passage("d1p1", "quarro.md", "Quarro V4", text)
    teacher = _Teacher(
        {
            "When does the Quarro V4 ship?": "The Quarro V4 ships in 2026. It costs",  # cut: its whole sentence used
            "Which speed did the V3 reach at its peak?": "It was the V3, at 3.2 GHz.",  # the question names V3
        }
    )
    teacher.QUESTIONS = {**_Teacher.QUESTIONS, "V3": "Which speed did the V3 reach at its peak?"}
    config = AugmentConfig(
        template_questions=1,
        questions_per_fact=1,
        answers="distill",
        sentence_questions=False,
        rewrites=0,
        round_trip=False,
    )
    rows = generate_qa([passage], teacher, config, Progress())
    by_fact = {r["fact"]: r for r in rows if r["origin"] == "written"}
    assert by_fact["2026"]["answer"] == "The Quarro V4 ships in 2026." and not by_fact["2026"]["teacher_reason"]
    # A question that names the fact it asks for is dropped before any answer is asked for.
    assert not by_fact["V3"]["kept"] and by_fact["V3"]["reason"] == "names V3, the fact it asks for"
    # A template question asks about its whole sentence: an answer stating one of its facts is used, one stating
    # none of them leaves the sentence.
    teacher.default = "The V3 peaked, and its top clock speed is higher."
    templates = [r for r in generate_qa([passage], teacher, config, Progress()) if r["origin"] == "template"]
    assert len(templates) == 2
    for row in templates:
        if "V3" in row["sentence"]:
            assert row["answer"] == "The V3 peaked, and its top clock speed is higher." and row["teacher_reason"] == ""
        else:
            assert (
                row["answer"] == row["sentence"] and row["teacher_reason"] == "does not state a fact of its sentence"
            )


HEADLINE = "Amazon EC2 P5 instances are now generally available"
TITLE_CASE_HEADLINE = "New – Amazon EC2 P5 Instances Powered by NVIDIA H100 Tensor Core GPUs for Generative AI"
UNNAMED_HEADLINE = "The role of vector datastores in generative AI applications"


def test_a_headline_is_never_the_subject_of_a_template_question():
    from kinject.augment import title_subject, topic_of

    # A short name is the subject; a headline gives its own first name, or none.
    assert title_subject("Amazon EC2 P5 Instances | AWS") == "Amazon EC2 P5 Instances"
    assert title_subject("Llama 3 | Meta AI Blog") == "Llama 3"  # the site's name is never the subject
    assert title_subject(HEADLINE) == "Amazon EC2 P5"
    assert title_subject("Agents for Amazon Bedrock enter preview") == "Amazon Bedrock"
    assert title_subject(TITLE_CASE_HEADLINE) == ""
    assert title_subject("The role of vector datastores in generative AI applications") == ""
    assert title_subject("What is Amazon Bedrock?") == "Amazon Bedrock"  # a question: the name in it
    unnamed = "They have eight GPUs and two terabytes of memory each."  # names nothing: the title's subject
    assert topic_of(unnamed, HEADLINE) == "Amazon EC2 P5"
    # A Title Case headline gives no subject: the passage's first name stands in, else the title's first name.
    assert topic_of(unnamed, TITLE_CASE_HEADLINE, "The P5 has them.") == "P5"
    assert topic_of(unnamed, TITLE_CASE_HEADLINE) == "Amazon EC2"
    assert topic_of(unnamed, "The role of vector datastores in generative AI applications") == ""


def test_template_questions_ask_about_a_name_or_are_left_out():
    from kinject.augment import Passage, generate_qa
    from kinject.runtime.progress import Progress

    text = (
        "Each p5.48xlarge instance has 8 GPUs and 2 TB of system memory. P5 instances deliver 3,200 Gbps of bandwidth."
    )
    config = AugmentConfig(template_questions=5, questions_per_fact=0, sentence_questions=False, rewrites=0)
    for title, subject in ((HEADLINE, "Amazon EC2 P5"), (TITLE_CASE_HEADLINE, "P5")):
        rows = generate_qa([Passage("d1p1", "p5.html", title, text)], _Silent(), config, Progress())
        asked = {r["sentence"]: [] for r in rows}
        for r in rows:
            assert r["origin"] == "template" and title not in r["question"]
            asked[r["sentence"]].append(r["question"])
        first, second = text.split(" P5 ")[0], "P5 " + text.split(" P5 ")[1]
        assert all(q.count("P5") == 1 for q in asked[second]) and len(asked[second]) == 5  # its own name, "P5"
        # The first sentence names nothing: the headline's name stands in, else the passage's first name ("P5").
        assert len(asked[first]) == 5 and all(subject in q for q in asked[first])
    # With no name in the sentence, its passage or its title, no template question is asked.
    unnamed = "They have eight GPUs and two terabytes of memory each."
    assert generate_qa([Passage("d1p1", "v.html", UNNAMED_HEADLINE, unnamed)], _Silent(), config, Progress()) == []


MARKDOWN_PAGE = (
    "# Corvane introduces the Nimbus 12 and Nimbus 16 laptops\n\n"
    "Corvane, a laptop maker from Lindhaven, has introduced two sizes of its new Nimbus notebook.\n\n"
    "## Nimbus 12\n\n"
    "The Nimbus 12 weighs 1.1 kg and runs for 14 hours on a charge. It costs $1,299 and uses the older Quarro V3 "
    "processor.\n\n"
    "## Availability\n\n"
    "Orders for both sizes open at the same time, in silver or graphite, from the company's own shop."
)


def test_markdown_headings_are_never_part_of_a_passage_but_name_its_section():
    from kinject.augment import topic_of

    title = "Corvane introduces the Nimbus 12 and Nimbus 16 laptops"
    passages = split_passages([{"text": MARKDOWN_PAGE, "title": title, "source": "nimbus.md"}])
    assert [p.heading for p in passages] == [title, "Nimbus 12", "Availability"]
    assert not any("#" in p.text for p in passages)  # was "## Nimbus 12 The Nimbus 12 weighs ..."
    assert passages[1].text.startswith("The Nimbus 12 weighs 1.1 kg")
    # The same without blank lines around the headings (how .md and .txt files often come): the same passages.
    tight = (
        MARKDOWN_PAGE.replace("\n\n## ", "\n## ")
        .replace("12\n\n", "12\n")
        .replace("Availability\n\n", "Availability\n")
    )
    assert split_passages([{"text": tight, "title": title, "source": "nimbus.md"}]) == passages
    unnamed = "It costs $1,299 and runs on a battery."
    assert topic_of(unnamed, title, passages[1].text, "Nimbus 12") == "Nimbus 12"  # the section's name
    # A heading that is no specific name ("Availability") gives no subject: the passage's name stands in.
    assert topic_of(unnamed, title, "Orders for the Quarro V4 open.", "Availability") == "Quarro V4"


@pytest.mark.parametrize(
    ("sentence", "fact", "question"),
    [
        (
            "The Tidewell T2 goes on sale on October 6, 2026.",
            "October 6, 2026",
            "The Tidewell T2 goes on sale on what date?",
        ),
        (
            "Its sealed lithium cell is rated to last 15 years without replacement, and the meter sends its readings "
            "over the radio network.",
            "15 years",
            "Its sealed lithium cell is rated to last how many years without replacement?",
        ),
        (
            "It costs $1,299 and uses the older Quarro V3 processor.",
            "1,299",
            "It costs how many dollars and uses the older Quarro V3 processor?",
        ),
        (
            '"The T2 shows them where the water goes," said Ilse Marrakov, chief executive of Orvanta Metering.',
            "Ilse Marrakov",
            '"The T2 shows them where the water goes," said who, chief executive of Orvanta Metering?',
        ),
        (
            "Orvanta Metering, a maker of utility equipment headquartered in Brennholt, today announced the T2.",
            "Brennholt",
            "Orvanta Metering, a maker of utility equipment headquartered in what, today announced the T2?",
        ),
        (
            "Halvren joined the group in 2017 after a long search.",
            "2017",
            "Halvren joined the group in what year after a long search?",
        ),
        ("The Nimbus 16 weighs 1.7 kg and lasts 15 hours on a charge.", "16", ""),  # a name's number: not asked
        ("In 2023, Corvane sold 40,000 laptops.", "2023", "In what year, Corvane sold 40,000 laptops?"),
        (
            'The CEO said, "We will ship 500 units to Lindhaven."',
            "500",
            'The CEO said, "We will ship how many units to Lindhaven"?',
        ),
    ],
)
def test_a_cloze_question_asks_for_exactly_its_fact(sentence, fact, question):
    from kinject.augment.cloze import cloze_question, fact_spans

    spans = {s.text: s for s in fact_spans(sentence)}
    assert fact in spans
    assert cloze_question(sentence, spans[fact]) == question
    assert fact not in cloze_question(sentence, spans[fact])


def test_questions_made_from_the_sentence_ask_for_every_fact():
    from dataclasses import replace

    from kinject.augment import Passage, generate_qa
    from kinject.runtime.progress import Progress

    text = "The Nimbus 12 weighs 1.1 kg and runs for 14 hours on a charge. It costs $1,299 and uses a Quarro V3."
    passage = Passage("d1p1", "nimbus.md", "Nimbus", text, "Nimbus 12")
    config = AugmentConfig(rewrites=0, round_trip=False, answers="sentence")
    off = generate_qa([passage], _Silent(), replace(config, sentence_questions=False), Progress())
    assert off == []
    rows = generate_qa([passage], _Silent(), config, Progress())
    cloze = {r["fact"]: r for r in rows if r["kept"] and r["origin"] == "cloze"}
    assert {"1.1 kg", "14 hours", "1,299", "Quarro V3"} <= set(cloze)
    assert all(r["answer"] == r["sentence"] for r in rows)
    assert cloze["14 hours"]["question"] == "The Nimbus 12 runs for how many hours on a charge?"  # one conjunct
    # The setting is part of the cache key: turning it off generates the set again.
    from kinject.augment.cache import augmentation_key

    off_key = augmentation_key("qa", replace(config, sentence_questions=False), "c", "m")
    assert augmentation_key("qa", config, "c", "m") != off_key


@pytest.mark.parametrize(
    ("sentence", "fact", "clause"),
    [
        (
            "She joined Halvren in 2017 after studying at Tessen Polytechnic, and today she leads a group of 140 "
            "chip designers.",
            "140",
            "Today she leads a group of 140 chip designers.",
        ),
        (
            "She joined Halvren in 2017 after studying at Tessen Polytechnic, and today she leads a group of 140 "
            "chip designers.",
            "2017",
            "She joined Halvren in 2017 after studying at Tessen Polytechnic.",
        ),
        ("Its top clock speed is 3.6 GHz, where the V3 peaked at 3.2 GHz.", "3.2 GHz", "The V3 peaked at 3.2 GHz."),
        ("It sold 140 units, while 14 of them came back.", "14", "14 of them came back."),  # not the "14" of "140"
        ("It sold 140 units, while 14 of them came back.", "140", "It sold 140 units."),
        (
            "The T2 goes on sale on October 6, 2026, in three districts.",
            "T2",
            "The T2 goes on sale on October 6, 2026.",
        ),
        (
            "Orvanta Metering, a maker of utility equipment headquartered in Brennholt, today announced the T2.",
            "Brennholt",
            "Orvanta Metering, a maker of utility equipment headquartered in Brennholt.",
        ),
        (
            "Orvanta Metering, a maker of utility equipment headquartered in Brennholt, today announced the T2.",
            "T2",
            "Orvanta Metering today announced the T2.",
        ),
        (
            "She joined Corvane in 2019, and runs a studio of 35 people in Lindhaven.",
            "35",
            "She joined Corvane in 2019, and runs a studio of 35 people in Lindhaven.",  # "runs": no own subject
        ),
    ],
)
def test_a_clause_answer_states_its_fact_with_a_subject(sentence, fact, clause):
    from kinject.augment.cloze import fact_clause

    assert fact_clause(sentence, fact) == clause


def test_clause_answers_give_each_fact_its_own_answer():
    from kinject.augment import Passage, generate_qa
    from kinject.runtime.progress import Progress

    text = "Its top clock speed is 3.6 GHz, where the V3 peaked at 3.2 GHz. The Quarro V4 ships in 2026."
    passage = Passage("d1p1", "quarro.md", "Quarro V4", text)
    config = AugmentConfig(template_questions=1, rewrites=0, round_trip=False, answers="clause")
    rows = generate_qa([passage], _Silent(), config, Progress())
    answers = {r["fact"]: r["answer"] for r in rows if r["origin"] == "cloze"}
    assert answers["3.2 GHz"] == "The V3 peaked at 3.2 GHz."
    assert answers["3.6 GHz"] == "Its top clock speed is 3.6 GHz."
    templates = [r for r in rows if r["origin"] == "template"]
    assert templates and all(r["answer"] == r["sentence"] for r in templates)  # asks about the whole sentence
    sentence_config = AugmentConfig(template_questions=1, rewrites=0, round_trip=False, answers="sentence")
    assert all(r["answer"] == r["sentence"] for r in generate_qa([passage], _Silent(), sentence_config, Progress()))


def test_replay_shares_no_prompt_or_answer_with_what_measures_the_model():
    """Replay trains on the base's own answers: a prompt the evaluation, the guard or the retention probes also
    ask would be measured on what it was trained on."""
    from kinject.augment import replay_prompts
    from kinject.eval.probes import general_prompts, shipped_retention_probes
    from kinject.training.guard import guard_prompts

    replay = [p["prompt"].lower() for p in replay_prompts()]
    assert len(replay) == AugmentConfig().replay_prompts == len(set(replay))
    measured = [p["prompt"] for p in general_prompts() + guard_prompts()] + [
        p.question for p in shipped_retention_probes()
    ]
    for prompt in measured:
        assert prompt.lower() not in replay
    answers = {a.lower() for p in shipped_retention_probes() for a in p.answers}
    words = {w.strip("?.,").lower() for p in replay for w in p.split()}
    assert not {a for a in answers if " " not in a} & words  # no retention answer asked about ("paris", "tokyo")
    assert not any(a in p for a in answers for p in replay)


def test_replay_takes_each_question_form_in_turn():
    """A run that replays a few answers still replays every form of question, not only the commonest."""
    import random

    from kinject.corpus.mix import spread_forms

    rows = [{"question": f"What is {i}?"} for i in range(20)] + [{"question": f"How do {i}?"} for i in range(5)]
    rows += [{"question": "Who wrote it?"}, {"question": "Write a haiku."}, {"question": " "}]
    order = spread_forms(rows, random.Random(0))
    assert sorted(map(id, order)) == sorted(map(id, rows))  # every row, once
    firsts = {(r["question"].split() or [""])[0] for r in order[:5]}
    assert firsts == {"What", "How", "Who", "Write", ""}
    assert [r["question"].split()[0] for r in order[5:7]] == ["What", "How"] and order == spread_forms(
        rows, random.Random(0)
    )
