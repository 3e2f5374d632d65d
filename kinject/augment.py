"""Augmentation: training data a chat model can answer from, generated from the corpus (stage: augment).

A model trained on a page in one phrasing stores its facts but struggles to extract them (Allen-Zhu & Li, Physics
of Language Models 3.1); rephrasings and question-answer pairs make them extractable, and mixing in the base
model's own answers to general prompts (replay) keeps its chat behaviour. Three kinds of rows, each saved in the
run folder with the passage it came from, and filtered:

- *paraphrases*: rewrites of each passage under varied instructions (plain, bullet facts, reordered, Q&A style),
  kept only when they keep every number and name of the passage and add no number of their own;
- *question-answer pairs*: for every fact of a sentence (a date, number or name), questions written by the
  generator from a few examples (answer-conditioned), and questions from fixed templates about the sentence's
  subject; the answer is the sentence that states the fact, or the generator's answer when it is supported by the
  passage. Trained as chat turns with the loss on the answer only (``kinject.blocks``);
- *replay*: the base model's own greedy answers to shipped general chat prompts (none of the evaluation's).

The generator is the run's base model (offline, batched on the CPU or GPU) or any TGI/OpenAI-compatible endpoint
(a stronger teacher), behind one ``Generator`` interface. Each kind is cached under a key of what it depends on, so
trainings and ablations that need the same data generate it once.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .config import AugmentConfig, GenerationConfig, ModelConfig, from_dict, to_dict
from .errors import KinjectError
from .facts import key_terms, name_spans, name_words, numeric_spans, paragraphs, sentences, words_of
from .progress import Progress
from .runs import RunDir, read_jsonl

KINDS = ("paraphrase", "qa", "replay")
AUGMENT_VERSION = 2  # bump when generation or filtering changes, so cached sets are generated again
_KIND_VERSION = {"paraphrase": 2, "qa": 1, "replay": 2}  # the same, for one kind
_ANSWER_FILTER_VERSION = 2  # the same, for question-answer sets whose answers the generator wrote
REPLAY_PROMPTS = Path(__file__).parent / "data" / "replay_prompts.jsonl"
MIN_PASSAGE_WORDS = 12

PARAPHRASE_INSTRUCTIONS = {
    "plain": "Rewrite the following text in your own words. Keep every number and every name.",
    "bullets": "List the facts of the following text as short bullet points. Keep every number and every name.",
    "reordered": "Rewrite the following text so that its facts come in a different order. Keep every number and "
    "every name.",
    "qa-style": "Rewrite the following text as a few questions, each followed by its answer. Keep every number "
    "and every name.",
}
QUESTION_INSTRUCTION = "Write one question that the sentence answers, with the given answer. Reply with the question."
# Answer-conditioned question writing, shown by example (small models follow examples better than instructions).
# The examples are about unrelated topics on purpose.
QUESTION_EXAMPLES = (
    ("The Golden Gate Bridge opened to traffic in May 1937.", "May 1937", "When did the Golden Gate Bridge open?"),
    (
        "The city library lends e-books through an app called Libby, which also plays audiobooks.",
        "Libby",
        "Which app does the city library use to lend e-books?",
    ),
    (
        "The museum holds 35,000 objects, including paintings by Rembrandt and Vermeer.",
        "35,000",
        "How many objects are in the museum's collection?",
    ),
)
TEMPLATES = (
    "What do you know about {topic}?",
    "Tell me about {topic}.",
    "What can you tell me about {topic}?",
    "Share a fact about {topic}.",
    "What is worth knowing about {topic}?",
)
ANSWER_INSTRUCTION = "Answer the question from the passage, in one or two sentences.\n\nPassage: {passage}"
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how in into is it its of on or that the their this "
    "to was what when where which who why will with about after also any been more most not one only other such "
    "than them then there these they those through under up use used using very while your".split()
)


class AugmentError(KinjectError, RuntimeError):
    """Augmentation cannot run; the message says why."""


@dataclass
class Passage:
    """A paragraph (short ones merged with the next) of one corpus document."""

    id: str
    source: str
    title: str
    text: str


def split_passages(documents: list[dict[str, Any]]) -> list[Passage]:
    """The passages of the corpus documents (``text``, ``source``, ``title``); a heading-only paragraph (the
    title) and anything shorter than MIN_PASSAGE_WORDS is joined to the next."""
    found = []
    for d, doc in enumerate(documents):
        pending = ""
        k = 0
        for para in paragraphs(doc["text"]):
            if para.strip() == (doc.get("title") or "").strip():
                continue
            pending = f"{pending} {para}".strip()
            if len(pending.split()) >= MIN_PASSAGE_WORDS:
                k += 1
                found.append(Passage(f"d{d + 1}p{k}", doc.get("source", ""), doc.get("title", ""), pending))
                pending = ""
        if pending and len(pending.split()) >= 3:
            found.append(Passage(f"d{d + 1}p{k + 1}", doc.get("source", ""), doc.get("title", ""), pending))
    return found


# -------------------------------------------------------------------------------------------------- generators


class Generator(Protocol):
    """Writes chat answers to many conversations at once."""

    name: str

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]: ...


class LocalGenerator:
    """A loaded model and tokenizer: batched, left-padded generation (kinject.generate)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, progress: Progress | None = None):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.progress = progress or Progress()
        self.name = "base"

    def chat_with_ends(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[tuple[str, bool]]:
        from .generate import chat_prompt_ids, generate_batch

        ids = [chat_prompt_ids(self.tokenizer, c) for c in conversations]
        gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=0.95)
        out = generate_batch(self.model, self.tokenizer, ids, gen, self.batch_size, seed, self.progress)
        return [(self.tokenizer.decode(new, skip_special_tokens=True).strip(), ended) for new, ended in out]

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        return [text for text, _ in self.chat_with_ends(conversations, max_new_tokens, temperature, seed)]


class EndpointGenerator:
    """A TGI, vLLM or SGLang server through its OpenAI-style ``/v1/chat/completions`` (huggingface_hub's client)."""

    def __init__(self, url: str, model: str | None = None, progress: Progress | None = None, workers: int = 4):
        from huggingface_hub import InferenceClient

        self.client = InferenceClient(base_url=url.rstrip("/"), timeout=120)
        self.model, self.workers = model, workers
        self.progress = progress or Progress()
        self.name = url

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        def one(i: int) -> str:
            if self.progress.should_stop():
                raise InterruptedError("generation stopped by the user")
            reply = self.client.chat_completion(
                conversations[i],
                model=self.model,
                max_tokens=max_new_tokens,
                temperature=max(temperature, 0.0),  # 0.0 is greedy on TGI, vLLM and OpenAI; None would sample
                seed=seed + i,
            )
            self.progress.advance(1)
            return (reply.choices[0].message.content or "").strip()

        try:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                return list(pool.map(one, range(len(conversations))))
        except InterruptedError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the client raises, the user needs the endpoint named
            raise AugmentError(f"generator endpoint {self.name} failed: {type(exc).__name__}: {exc}") from exc


# ----------------------------------------------------------------------------------------------------- filters


def _norm(text: str) -> str:
    from .eval.matching import normalize_answer

    return normalize_answer(text)


def content_words(text: str) -> set[str]:
    """Lower-case words of four letters or more that carry meaning (no stop words)."""
    return {w for w in re.findall(r"[a-z0-9][a-z0-9\-]{3,}", text.lower()) if w not in _STOPWORDS}


def paraphrase_problem(passage: str, rewrite: str) -> str:
    """Why a rewrite cannot stand for its passage ("" when it can): a number or name dropped or changed, a new
    number, a copy, or a length far from the passage's."""
    if not rewrite.strip():
        return "empty"
    if _norm(rewrite) == _norm(passage):
        return "a copy of the passage"
    kept, got = key_terms(passage), key_terms(rewrite)
    missing = sorted(kept - got)
    if missing:
        return f"drops or changes {', '.join(missing[:3])}"
    words = words_of(rewrite)
    dropped = [name for name, parts in name_words(passage).items() if parts and not parts & words]
    if dropped:
        return f"drops {', '.join(dropped[:3])}"
    numbers = {_norm(s.text) for s in numeric_spans(rewrite)} - {_norm(s.text) for s in numeric_spans(passage)}
    if numbers:
        return f"adds {', '.join(sorted(numbers)[:3])}, which the passage does not say"
    ratio = len(rewrite.split()) / max(len(passage.split()), 1)
    if not 0.4 <= ratio <= 3.0:
        return f"{ratio:.1f} times the passage's length"
    return ""


def question_problem(question: str, sentence: str, answer: str) -> str:
    """Why a written question is unusable ("" when usable): not a question, too short or long, giving its
    numeric answer away, or about something the sentence does not mention."""
    question = question.strip()
    if not question.endswith("?"):
        return "not a question"
    words = len(question.split())
    if not 4 <= words <= 30:
        return f"{words} words"
    if answer and numeric_spans(answer) and _norm(answer) in _norm(question):
        return "contains its answer"  # (a name it asks about may be the sentence's subject, and is allowed)
    if not content_words(question) & content_words(sentence):
        return "shares no word with the sentence"
    return ""


def answer_problem(answer: str, passage: str) -> str:
    """Why an answer is not supported by its passage ("" when it is): a number or name the passage does not state,
    or mostly words the passage does not use."""
    if not answer.strip():
        return "empty"
    unknown = sorted(key_terms(answer) - key_terms(passage))
    numbers = {_norm(s.text) for s in numeric_spans(answer)} - {_norm(s.text) for s in numeric_spans(passage)}
    if unknown or numbers:
        return f"states {', '.join(sorted(set(unknown) | numbers)[:3])}, which the passage does not"
    words = words_of(passage)
    names = [name for name, parts in name_words(answer).items() if parts and not parts & words]
    if names:
        return f"names {', '.join(names[:3])}, which the passage does not"
    words = content_words(answer)
    if words and len(words & content_words(passage)) / len(words) < 0.6:
        return "mostly words the passage does not use"
    return ""


# ------------------------------------------------------------------------------------------------- generation


def facts_of(sentence: str) -> list[str]:
    """The facts a sentence can be asked about: its dates and numbers, then its specific names."""
    seen, facts = set(), []
    for span in [*numeric_spans(sentence), *name_spans(sentence)]:
        key = _norm(span.text)
        if key and key not in seen and len(sentence[: span.start].split()) >= 1:
            seen.add(key)
            facts.append(span.text)
    return facts


def asked_sentences(text: str) -> list[str]:
    """The sentences of a passage that questions are asked about: whole sentences of five words or more."""
    return [s for s in sentences(text) if len(s.split()) >= 5 and s.endswith((".", "!", "?"))]


def topic_of(sentence: str, title: str) -> str:
    """What a sentence is about, for template questions: its first specific name, else its document's title."""
    names = name_spans(sentence)
    if names and names[0].start < len(sentence) // 2:
        return names[0].text
    return title.rstrip(".") or "this topic"


def _question_conversation(sentence: str, answer: str) -> list[dict[str, str]]:
    messages = []
    for ex_sentence, ex_answer, ex_question in QUESTION_EXAMPLES:
        messages.append(
            {"role": "user", "content": f"{QUESTION_INSTRUCTION}\nSentence: {ex_sentence}\nAnswer: {ex_answer}"}
        )
        messages.append({"role": "assistant", "content": ex_question})
    messages.append({"role": "user", "content": f"{QUESTION_INSTRUCTION}\nSentence: {sentence}\nAnswer: {answer}"})
    return messages


def generate_paraphrases(
    passages: list[Passage], generator: Generator, config: AugmentConfig, progress: Progress
) -> list[dict[str, Any]]:
    """``paraphrases_per_passage`` rewrites of each passage, each under another instruction, filtered."""
    names = list(PARAPHRASE_INSTRUCTIONS)
    jobs = [
        (p, names[(i + k) % len(names)]) for i, p in enumerate(passages) for k in range(config.paraphrases_per_passage)
    ]
    progress.start("augment: paraphrases", total=len(jobs), unit="rewrite")
    conversations = [[{"role": "user", "content": f"{PARAPHRASE_INSTRUCTIONS[name]}\n\n{p.text}"}] for p, name in jobs]
    texts = generator.chat(
        conversations, config.augment_max_new_tokens, config.augment_temperature, config.augment_seed
    )
    progress.finish()
    rows = []
    for (p, name), text in zip(jobs, texts, strict=True):
        problem = paraphrase_problem(p.text, text)
        rows.append(
            {
                "kind": "paraphrase",
                "passage": p.id,
                "source": p.source,
                "passage_text": p.text,
                "instruction": name,
                "text": text,
                "kept": not problem,
                "reason": problem,
            }
        )
    return rows


def generate_qa(
    passages: list[Passage], generator: Generator, config: AugmentConfig, progress: Progress
) -> list[dict[str, Any]]:
    """Question-answer pairs for every fact of every sentence: generator-written questions and template ones."""
    rng = random.Random(config.augment_seed)
    asks: list[tuple[Passage, str, str]] = []  # passage, sentence, fact
    rows: list[dict[str, Any]] = []
    for p in passages:
        for sentence in asked_sentences(p.text):
            asks += [(p, sentence, fact) for fact in facts_of(sentence)]
            templates = rng.sample(TEMPLATES, min(config.template_questions, len(TEMPLATES)))
            topic = topic_of(sentence, p.title)
            for template in templates:
                rows.append(_qa_row(p, sentence, "", template.format(topic=topic), "template"))
    jobs = [(p, s, fact) for p, s, fact in asks for _ in range(config.questions_per_fact)]
    progress.start("augment: questions", total=len(jobs), unit="question")
    conversations = [_question_conversation(s, fact) for _, s, fact in jobs]
    # The first question of a fact greedy, the others sampled: one reliable phrasing, then variety.
    questions: list[str] = [""] * len(jobs)
    firsts = [i for i in range(len(jobs)) if i == 0 or jobs[i] != jobs[i - 1]]
    taken = set(firsts)
    others = [i for i in range(len(jobs)) if i not in taken]
    for group, temperature in ((firsts, 0.0), (others, config.augment_temperature)):
        if group:
            texts = generator.chat([conversations[i] for i in group], 48, temperature, config.augment_seed)
            for i, text in zip(group, texts, strict=True):
                questions[i] = text.strip().splitlines()[0].strip() if text.strip() else ""
    progress.finish()
    seen: set[tuple[str, str]] = set()
    for (p, sentence, fact), question in zip(jobs, questions, strict=True):
        row = _qa_row(p, sentence, fact, question, "generator")
        problem = question_problem(question, sentence, fact)
        if not problem and (p.id, _norm(question)) in seen:
            problem = "asked already"
        seen.add((p.id, _norm(question)))
        row.update(kept=not problem, reason=problem)
        rows.append(row)
    if config.answers == "generator":
        _write_answers(rows, passages, generator, config, progress)
    return rows


def _qa_row(p: Passage, sentence: str, fact: str, question: str, origin: str) -> dict[str, Any]:
    return {
        "kind": "qa",
        "passage": p.id,
        "source": p.source,
        "sentence": sentence,
        "fact": fact,
        "origin": origin,
        "question": question,
        "answer": sentence,
        "kept": True,
        "reason": "",
    }


def _write_answers(
    rows: list[dict[str, Any]],
    passages: list[Passage],
    generator: Generator,
    config: AugmentConfig,
    progress: Progress,
) -> None:
    """Let the generator answer each kept question from its passage; keep only answers the passage supports."""
    text = {p.id: p.text for p in passages}
    todo = [r for r in rows if r["kept"]]
    progress.start("augment: answers", total=len(todo), unit="answer")
    conversations = [
        [{"role": "user", "content": ANSWER_INSTRUCTION.format(passage=text[r["passage"]]) + f"\n\n{r['question']}"}]
        for r in todo
    ]
    answers = generator.chat(conversations, config.augment_max_new_tokens, 0.0, config.augment_seed)
    progress.finish()
    for row, answer in zip(todo, answers, strict=True):
        problem = answer_problem(answer, text[row["passage"]])
        row.update(answer=answer, kept=not problem, reason=f"answer {problem}" if problem else "")


def replay_prompts() -> list[dict[str, str]]:
    """The shipped general chat prompts for replay (none of them is an evaluation or guard prompt)."""
    return read_jsonl(REPLAY_PROMPTS)


def generate_replay(base: LocalGenerator, config: AugmentConfig, progress: Progress) -> list[dict[str, Any]]:
    """The base model's own greedy answers to ``replay_prompts`` general prompts (self-distillation data). An
    answer cut at ``augment_max_new_tokens`` is kept as it is, without an end of turn (``ended`` says which)."""
    prompts = replay_prompts()[: config.replay_prompts]
    progress.start("augment: replay", total=len(prompts), unit="answer")
    answers = base.chat_with_ends(
        [[{"role": "user", "content": p["prompt"]}] for p in prompts], config.augment_max_new_tokens, 0.0, 0
    )
    progress.finish()
    return [
        {
            "kind": "replay",
            "prompt_id": p["id"],
            "question": p["prompt"],
            "answer": text,
            "ended": ended,
            "kept": bool(text.strip()),
            "reason": "" if text.strip() else "empty",
        }
        for p, (text, ended) in zip(prompts, answers, strict=True)
    ]


# --------------------------------------------------------------------------------------------------- the verb


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]


# The settings each kind depends on (changing another setting does not generate it again).
_KIND_FIELDS = {
    "paraphrase": (
        "paraphrases_per_passage",
        "generator",
        "generator_model",
        "augment_temperature",
        "augment_max_new_tokens",
        "augment_seed",
    ),
    "qa": (
        "questions_per_fact",
        "template_questions",
        "answers",
        "generator",
        "generator_model",
        "augment_temperature",
        "augment_max_new_tokens",
        "augment_seed",
    ),
    "replay": ("replay_prompts", "augment_max_new_tokens"),
}


def augmentation_key(
    kind: str, config: AugmentConfig, corpus_digest: str, model: str, base: str = "full precision"
) -> str:
    """The cache name of one kind: the kind, then a digest of its settings, the corpus, the base model (name and
    revision in ``model``; ``base``: how it was loaded, as a 4-bit model writes other text than a 16-bit one) and,
    for replay, the shipped prompts."""
    settings = {k: getattr(config, k) for k in _KIND_FIELDS[kind]}
    version = [AUGMENT_VERSION, _KIND_VERSION[kind]]
    if kind == "qa" and config.answers == "generator":
        version.append(_ANSWER_FILTER_VERSION)
    extra = _digest(REPLAY_PROMPTS.read_text(encoding="utf-8")) if kind == "replay" else ""
    uses_base = kind == "replay" or config.generator == "base"
    return f"{kind}-{_digest([*version, kind, settings, corpus_digest, model, base if uses_base else '', extra])}"


def _loaded_as(generator: LocalGenerator | None) -> str:
    """How a local generator's model is loaded, for the cache key (what ``_load_base`` loads when None)."""
    if generator is None:
        return "full precision"
    model = generator.model
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False):
        return "4-bit"
    return "full precision"


@dataclass
class Augmentation:
    """The generated rows of each kind asked for, and what making them cost."""

    rows: dict[str, list[dict[str, Any]]]
    keys: dict[str, str]
    seconds: dict[str, float]
    generated: list[str]  # the kinds generated now (the others came from the cache)

    def kept(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.get(kind, []) if r.get("kept")]


def ensure_augmentation(
    run_dir: str | Path | RunDir,
    config: AugmentConfig,
    kinds: tuple[str, ...] = KINDS,
    progress: Progress | None = None,
    base: LocalGenerator | None = None,
) -> Augmentation:
    """The run's augmentation of ``kinds``: from the cache, else generated and saved. ``base`` is the run's model
    already loaded (training passes its own, so it is not loaded twice); otherwise it is loaded when needed."""
    run = RunDir(run_dir).require()
    progress = progress or Progress()
    corpus = run.load_corpus()
    documents = corpus.to_list()
    model_cfg = from_dict(ModelConfig, run.section("model"), "model")
    corpus_digest = _digest([d["sha256"] for d in documents])
    model_id = f"{model_cfg.model}@{model_cfg.revision}" if model_cfg.revision else model_cfg.model
    loaded_as = _loaded_as(base)
    wanted = {kind: augmentation_key(kind, config, corpus_digest, model_id, loaded_as) for kind in kinds}
    result = Augmentation({}, wanted, {}, [])
    missing = []
    for kind, key in wanted.items():
        cached = run.load_augmentation(key)
        if cached is None:
            missing.append(kind)
        else:
            result.rows[kind], info = cached
            result.seconds[kind] = info.get("seconds", 0.0)
    if not missing:
        return result
    passages = split_passages(documents)
    if base is None and ("replay" in missing or config.generator == "base"):
        base = _load_base(model_cfg, config, progress)
    generator: Generator = (
        base if config.generator == "base" else EndpointGenerator(config.generator, config.generator_model, progress)
    )
    for kind in missing:
        started = time.time()
        if kind == "paraphrase":
            rows = (
                generate_paraphrases(passages, generator, config, progress) if config.paraphrases_per_passage else []
            )
        elif kind == "qa":
            rows = generate_qa(passages, generator, config, progress)
        else:
            rows = generate_replay(base, config, progress) if config.replay_prompts else []
        seconds = round(time.time() - started, 1)
        kept = sum(bool(r["kept"]) for r in rows)
        info = {
            "kind": kind,
            "key": wanted[kind],
            "rows": len(rows),
            "kept": kept,
            "seconds": seconds,
            "generator": generator.name if kind != "replay" else "base",
            "config": to_dict(config),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        run.save_augmentation(wanted[kind], rows, info)
        progress.log(f"augment: {kind}: kept {kept} of {len(rows)} in {seconds:.0f} s")
        result.rows[kind], result.seconds[kind] = rows, seconds
        result.generated.append(kind)
    return result


def _load_base(model_cfg: ModelConfig, config: AugmentConfig, progress: Progress) -> LocalGenerator:
    from .models import load_model, load_tokenizer, resolve_model

    progress.start("augment: load model", total=None)
    resolved = resolve_model(model_cfg.model, model_cfg.revision, progress)
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved).eval()
    progress.finish()
    return LocalGenerator(model, tokenizer, config.augment_batch_size, progress)
