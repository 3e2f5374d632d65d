"""Configuration: one documented dataclass per stage of a run, validated on construction, declared once.

A field's ``help`` is the CLI's and the app's help text, its type picks the option and the control
(``kinject.settings.fields`` describes them), its default is the default everywhere. A run's ``config.yaml`` holds one
section per stage (``SECTIONS``); settings that are not a run's are in ``kinject.settings.services``. Secrets never
live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .choices import AnswerSource, GeneratorSource, Packing, QATarget, Switch, TextFormat
from .declare import ConfigError, check_choice, check_seed, require, setting
from .sources import FetchConfig, InputsConfig
from .training import TrainConfig


@dataclass
class CorpusConfig:
    """How extracted text becomes the training corpus (stage: corpus)."""

    _argument_group_name = "corpus"

    dedup_documents: bool = setting(True, "Drop documents whose cleaned text equals an earlier one.")
    dedup_paragraphs: bool = setting(
        True,
        "Drop site chrome that survived extraction: lines repeated across documents that are short or "
        "navigation-like, and lines on most pages (3 or more); a full sentence two articles share is kept.",
    )
    min_document_chars: int = setting(
        40, "A source whose cleaned text is shorter than this is reported as an error and left out."
    )
    min_document_words: int = setting(
        10, "A source whose cleaned text has fewer words than this is reported as an error and left out."
    )

    def __post_init__(self) -> None:
        require(self.min_document_chars >= 1, "min_document_chars", "must be >= 1")
        require(self.min_document_words >= 1, "min_document_words", "must be >= 1")


@dataclass
class BlocksConfig:
    """How the corpus is tokenized and packed into training blocks (stage: blocks).

    Blocks are cached in the run folder by what they depend on, so a training that asks for other blocks packs
    them once and a later one with the same settings reuses them.
    """

    _argument_group_name = "blocks"

    block_size: int = setting(512, "Tokens per training block; capped at the model's context length.")
    text_format: TextFormat = setting(
        "raw",
        "What the documents are packed as: 'raw' text, 'chat' (each page as the chat answer to a question about "
        "its title), 'both', or 'none' (left out: only augmentation is trained on).",
    )
    pad_last: bool = setting(
        False, "Pad the last, shorter block to block_size (padding masked with -100) instead of keeping it short."
    )
    use_paraphrases: bool = setting(False, "Also train on the augmentation's paraphrases of each passage (raw text).")
    use_qa: bool = setting(
        False, "Also train on the augmentation's question-answer pairs, as chat turns with the loss on the answers."
    )
    balance_facts: bool = setting(
        True,
        "With use_qa: repeat the questions of a fact that has fewer than the most-asked fact, so that every fact is "
        "trained as often (a fact with 2 kept questions is seen as often as one with 8).",
    )
    qa_target: QATarget = setting(
        "answer",
        "With use_qa: what a question-answer turn teaches. 'answer': its answer's tokens (cross-entropy); "
        "'teacher': the base model's whole next-token distribution over each answer token when it reads the "
        "passage with the question, KL(teacher || adapter) (context distillation); 'both'. The teacher needs "
        "packing 'rows'.",
    )
    packing: Packing = setting(
        "blocks",
        "How training examples are batched: 'blocks' packs them into blocks of block_size tokens (no example attends "
        "to another), a block a row of the batch; 'rows' gives each example (a page, a question-answer turn, a "
        "replay turn) a row of its own, so batch_size counts examples.",
    )
    replay_share: float = setting(
        0.0,
        "Share of the packed tokens taken by replay examples (their prompts and the base model's own answers to "
        "them, general chat turns), so the adapter keeps the base's chat behaviour (0: none).",
    )

    def __post_init__(self) -> None:
        require(self.block_size >= 16, "block_size", f"must be >= 16, got {self.block_size}")
        check_choice(self.text_format, "text_format", TextFormat)
        check_choice(self.packing, "packing", Packing)
        check_choice(self.qa_target, "qa_target", QATarget)
        require(0 <= self.replay_share < 0.9, "replay_share", f"must be within [0, 0.9), got {self.replay_share}")


@dataclass
class ModelConfig:
    """Which model to train on (stage: models)."""

    _argument_group_name = "model"

    model: str = setting(
        "smollm2-135m-instruct",
        "The bundled SmolLM2-135M-Instruct ('smollm2-135m-instruct'), a local model folder, or a Hub id "
        "(gated models read HF_TOKEN).",
    )
    revision: str | None = setting(None, "Hub revision (branch, tag or commit) for a Hub id.")

    def __post_init__(self) -> None:
        require(bool(self.model and self.model.strip()), "model", "must not be empty")


@dataclass
class GenerationConfig:
    """Decoding settings shared by `ask`, evaluation and the chat (TGI's defaults in the case study)."""

    _argument_group_name = "generation"

    max_new_tokens: int = setting(200, "Most tokens generated per answer.")
    temperature: float = setting(0.01, "Sampling temperature; at or below 0.05 decoding is greedy.")
    top_p: float = setting(0.9, "Nucleus sampling mass (ignored when greedy).")
    repetition_penalty: float = setting(1.0, "Penalty for repeated tokens (1.0 = none).")

    def __post_init__(self) -> None:
        require(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        require(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        require(0 < self.top_p <= 1, "top_p", f"must be within (0, 1], got {self.top_p}")
        require(self.repetition_penalty > 0, "repetition_penalty", "must be > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.05


@dataclass
class AugmentConfig:
    """What augmentation generates from the corpus (stage: augment); the blocks settings choose what is trained on.

    Everything generated is saved in the run folder with the passage it came from, and filtered: a paraphrase must
    keep every number and name of its passage, an answer must be supported by its passage.
    """

    _argument_group_name = "augment"

    paraphrases_per_passage: int = setting(
        1, "Rewrites of each passage, each with another instruction (plain, bullet facts, reordered, Q&A style)."
    )
    sentence_questions: bool = setting(
        True,
        "Ask for every fact (a date, time, number or name of a sentence) with questions made from its own sentence: "
        "the fact replaced by question words of its kind ('The T2 goes on sale on what date?'), the question words "
        "first ('When does the T2 go on sale?'), the relation an apposition states ('Who is the chief executive of "
        "X?'), with the subject's short name and with a thing or an attribute in other words ('How long does the "
        "trip last?' for 'The crossing takes'). They ask for exactly that fact.",
    )
    rewrites: int = setting(
        3,
        "Rewordings the generator writes of each question made from a sentence (the first greedy, the others "
        "sampled), kept only when the round trip finds them answered with the fact.",
    )
    rewrites_per_fact: int = setting(
        9,
        "Fewest rewordings a fact gets: a fact with few questions made from its sentence has more of them reworded "
        "(sampled), so that it is asked in as many ways as the others (0: only 'rewrites' of each; nothing is "
        "reworded when 'rewrites' is 0).",
    )
    questions_per_fact: int = setting(
        0,
        "Questions the generator writes for each fact from its sentence, with the fact marked (the first greedy, "
        "the others sampled), kept only when the round trip finds them answered with the fact.",
    )
    round_trip: bool = setting(
        True,
        "Keep a question a model wrote only when the generator, reading the passage, answers it with the fact "
        "(a question that asks about something else is dropped).",
    )
    kept_per_fact: int = setting(
        8, "Most questions kept for each fact, their phrasings spread over the rules and rewordings that made them."
    )
    template_questions: int = setting(
        0,
        "Questions per sentence from fixed templates about its subject ('Tell me about X.'), answered with the "
        "whole sentence (0: none; they teach reciting a sentence rather than answering).",
    )
    answers: AnswerSource = setting(
        "fact",
        "Answers to the questions: the 'fact' stated by its own clause with its subject ('The Lumora Grand carries "
        "410 passengers and 60 cars.'), 'one-fact': that clause cut to the half of a coordination that holds the "
        "fact ('The Lumora Grand carries 410 passengers.'; fewer facts learnt on bench/data/holdout), the "
        "'sentence' that states it, the 'clause' of the sentence that does, "
        "written by the 'generator' from the passage (kept only when supported by it and stating the fact asked), "
        "or 'distill': the generator's answer where it passes those checks, else the fact's clause (for a stronger "
        "teacher).",
    )
    questions: list[str] = setting(
        [],
        'Your own question-answer files (JSONL: one {"question", "answer", "source"} object a line; or CSV '
        "with a question,answer[,source] header), trained beside the generated pairs. Read at prepare and at each "
        "training (the run keeps a copy, used when a file is gone); an answer the pages do not support is kept "
        "with a warning in the data report.",
        metavar="FILE",
    )
    replay_prompts: int = setting(
        96,
        "Shipped general prompts whose base-model answers are kept for replay (none of the evaluation's): 48 chat "
        "requests, then 48 short general-knowledge questions, the form of the question-answer pairs, so that a "
        "short factual question keeps the base's answer rather than taking the pages' style.",
    )
    generator: GeneratorSource = setting(
        "base",
        "Who writes paraphrases and questions: 'base' (the run's own model, offline) or the URL of a TGI or "
        "OpenAI-compatible server (a stronger teacher). Replay always comes from the base model.",
    )
    generator_model: str | None = setting(None, "Model name to request from an OpenAI-compatible generator endpoint.")
    augment_temperature: float = setting(0.7, "Sampling temperature of the generator (the first answer is greedy).")
    augment_max_new_tokens: int = setting(160, "Most tokens the generator writes per paraphrase or answer.")
    augment_batch_size: int = setting(16, "Prompts generated at once by the local generator.")
    augment_seed: int = setting(0, "Seed for sampling and for choosing templates and instructions.")

    def __post_init__(self) -> None:
        for name in (
            "paraphrases_per_passage",
            "questions_per_fact",
            "rewrites",
            "rewrites_per_fact",
            "template_questions",
            "replay_prompts",
            "kept_per_fact",
        ):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        check_choice(self.answers, "answers", AnswerSource)
        require(bool(self.generator and self.generator.strip()), "generator", "must be 'base' or a URL")
        require(
            self.generator == "base" or self.generator.startswith(("http://", "https://")),
            "generator",
            f"must be 'base' or an http(s) URL, got {self.generator!r}",
        )
        require(self.augment_temperature >= 0, "augment_temperature", "must be >= 0")
        check_seed("augment_seed", self.augment_seed)
        require(self.augment_max_new_tokens >= 8, "augment_max_new_tokens", "must be >= 8")
        require(self.augment_batch_size >= 1, "augment_batch_size", "must be >= 1")
        self.questions = [q.strip() for q in self.questions if q and q.strip()]


@dataclass
class EvalConfig:
    """Base-vs-adapter evaluation (stage: evaluate); its decoding is the ``generation`` section."""

    _argument_group_name = "eval"

    probes: str | None = setting(
        None,
        "Probe file (JSONL: id, kind knowledge|retention, question, prompt, answers); unset: automatic probes.",
        metavar="FILE",
    )
    auto_probes: int = setting(8, "Knowledge probes generated from the corpus when no probe file is given (0: none).")
    retention: bool = setting(True, "Add kinject's shipped retention probes (general knowledge and chat behaviour).")
    forgetting: bool = setting(True, "Measure KL divergence and perplexity ratio on kinject's shipped general data.")
    open_book: bool = setting(
        True,
        "Also answer each knowledge probe with the base model and the run's pages in its prompt (the whole corpus "
        "when it fits the context, else the paragraphs BM25 ranks highest): the yardstick without training.",
    )
    kl_max_new_tokens: int = setting(
        64, "Tokens of the base model's own greedy answer to each general prompt over which KL is measured."
    )
    eval_batch_size: int = setting(
        8,
        "Answers generated at once (greedy decoding gives each the answer it gets alone; sampling answers one at a "
        "time). Larger is faster until memory or cores run out.",
    )
    quick: Switch = setting(
        "off",
        "A quick probe set: at most 4 knowledge and 4 retention probes, answers of at most 32 tokens, KL on 4 "
        "general prompts over at most 16 tokens (fewer, shorter answers: a fraction of the full set's time); "
        "'auto' is quick on a CPU and full with CUDA (the app's default for evaluating when training ends).",
    )

    def __post_init__(self) -> None:
        require(self.auto_probes >= 0, "auto_probes", f"must be >= 0, got {self.auto_probes}")
        require(self.kl_max_new_tokens >= 1, "kl_max_new_tokens", f"must be >= 1, got {self.kl_max_new_tokens}")
        require(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        check_choice(self.quick, "quick", Switch)


@dataclass
class PrepareConfig:
    """Everything `prepare` needs: the inputs plus the settings of each stage it runs."""

    inputs: InputsConfig = field(default_factory=InputsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    blocks: BlocksConfig = field(default_factory=BlocksConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        # Named in words rather than by a field ("urls: ..."): the URLs and Files of the app, --urls and --files.
        if not (self.inputs.urls or self.inputs.files):
            raise ConfigError("nothing to prepare: give at least one URL or file")


# The sections of a run's config.yaml, each one stage's dataclass.
SECTIONS: dict[str, type] = {
    "inputs": InputsConfig,
    "model": ModelConfig,
    "fetch": FetchConfig,
    "corpus": CorpusConfig,
    "blocks": BlocksConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "generation": GenerationConfig,
}
