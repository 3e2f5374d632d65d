"""Augmentation: training data a chat model can answer from, generated from the corpus (stage: augment).

A model trained on a page in one phrasing stores its facts but struggles to extract them (Allen-Zhu & Li, Physics
of Language Models 3.1); rephrasings and question-answer pairs make them extractable, and mixing in the base
model's own answers to general prompts (replay) keeps its chat behaviour. Three kinds of rows, each saved in the
run folder with the passage it came from, and filtered:

- *paraphrases*: rewrites of each passage under varied instructions (plain, bullet facts, reordered, Q&A style),
  kept only when they keep every number and name of the passage and add no number of their own;
- *question-answer pairs*: for every fact of a sentence (a date, number or name), questions written by the
  generator from a few examples (answer-conditioned), and questions from fixed templates about the sentence's
  subject (and, asked for, each fact's own sentence as a cloze question); the answer is the sentence that states
  the fact, the clause of it that does, or the generator's answer when the passage supports it and it states the
  fact (``distill``: the generator's where it does, the clause elsewhere). Trained as chat turns with the loss on
  the answer only (``kinject.corpus.blocks``);
- *replay*: the base model's own greedy answers to shipped general chat prompts (none of the evaluation's).

The generator is the run's base model (offline, batched on the CPU or GPU) or any TGI/OpenAI-compatible endpoint
(a stronger teacher), behind one ``ChatGenerator`` interface. Each kind is cached under a key of what it depends on,
so trainings and ablations that need the same data generate it once.

Modules: ``facts`` (sentences and the facts they state), ``matching`` (whether a text states an answer: the rule
behind the filters and every accuracy of ``kinject.eval``), ``passages`` (passages and the facts asked about),
``prompts`` (what the generator is asked), ``generators`` (local and endpoint), ``filters`` (which rows are kept),
``generation`` (the three kinds), ``cache`` (the cache key) and ``verb`` (``ensure_augmentation``).

May import: ``kinject.models``, ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""

from .cache import KINDS, augmentation_key
from .filters import answer_problem, content_words, paraphrase_problem, question_problem
from .generation import generate_paraphrases, generate_qa, generate_replay, teacher_answers
from .generators import AugmentError, ChatGenerator, EndpointGenerator, LocalGenerator
from .passages import Passage, asked_sentences, facts_of, sentence_subject, split_passages, title_subject, topic_of
from .prompts import replay_prompts
from .report import data_report, format_report
from .user_questions import QuestionFileError, read_question_file, read_questions, user_rows
from .verb import Augmentation, ensure_augmentation

__all__ = [
    "KINDS",
    "AugmentError",
    "Augmentation",
    "ChatGenerator",
    "EndpointGenerator",
    "LocalGenerator",
    "Passage",
    "QuestionFileError",
    "answer_problem",
    "asked_sentences",
    "augmentation_key",
    "content_words",
    "data_report",
    "ensure_augmentation",
    "facts_of",
    "format_report",
    "generate_paraphrases",
    "generate_qa",
    "generate_replay",
    "paraphrase_problem",
    "question_problem",
    "read_question_file",
    "read_questions",
    "replay_prompts",
    "sentence_subject",
    "split_passages",
    "teacher_answers",
    "title_subject",
    "topic_of",
    "user_rows",
]
