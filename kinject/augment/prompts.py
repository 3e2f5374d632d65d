"""What the generator is asked: rewrite instructions, question writing by example, answer and replay prompts."""

from __future__ import annotations

from ..runs import read_jsonl
from ..settings.places import SHIPPED

REPLAY_PROMPTS = SHIPPED / "replay_prompts.jsonl"

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
REWRITE_INSTRUCTION = "Rewrite the question as a natural question. Keep every name. Reply with the question only."
# Rewording by example, from questions made by rule ("X goes on sale on what date?") to the way people ask, in
# words of their own: the generator copies a question whose example keeps its words.
REWRITE_EXAMPLES = (
    ("The bridge opened to traffic in what month?", "In which month could cars first drive across the bridge?"),
    ("The museum holds how many objects?", "How many items are in the museum's collection?"),
    (
        "The city library lends e-books through which app?",
        "Which app do members of the city library borrow e-books with?",
    ),
    ("Marie Curie won the Nobel Prize in what year?", "When was Marie Curie awarded the Nobel Prize?"),
)
TEMPLATES = (
    "What do you know about {topic}?",
    "Tell me about {topic}.",
    "What can you tell me about {topic}?",
    "Share a fact about {topic}.",
    "What is worth knowing about {topic}?",
)
ANSWER_INSTRUCTION = "Answer the question from the passage, in one or two sentences.\n\nPassage: {passage}"


def user_turn(content: str) -> list[dict[str, str]]:
    """A conversation of one user message."""
    return [{"role": "user", "content": content}]


def paraphrase_conversation(instruction: str, passage: str) -> list[dict[str, str]]:
    """Ask for a rewrite of ``passage`` under the named ``PARAPHRASE_INSTRUCTIONS`` entry."""
    return user_turn(f"{PARAPHRASE_INSTRUCTIONS[instruction]}\n\n{passage}")


def question_conversation(sentence: str, answer: str) -> list[dict[str, str]]:
    """Ask for a question about ``sentence`` whose answer is ``answer``, after the worked examples."""
    messages = []
    for ex_sentence, ex_answer, ex_question in QUESTION_EXAMPLES:
        messages.append(
            {"role": "user", "content": f"{QUESTION_INSTRUCTION}\nSentence: {ex_sentence}\nAnswer: {ex_answer}"}
        )
        messages.append({"role": "assistant", "content": ex_question})
    messages.append({"role": "user", "content": f"{QUESTION_INSTRUCTION}\nSentence: {sentence}\nAnswer: {answer}"})
    return messages


def rewrite_conversation(question: str) -> list[dict[str, str]]:
    """Ask for ``question`` in natural words, after the worked examples."""
    messages = []
    for before, after in REWRITE_EXAMPLES:
        messages.append({"role": "user", "content": f"{REWRITE_INSTRUCTION}\nQuestion: {before}"})
        messages.append({"role": "assistant", "content": after})
    messages.append({"role": "user", "content": f"{REWRITE_INSTRUCTION}\nQuestion: {question}"})
    return messages


def answer_conversation(passage: str, question: str) -> list[dict[str, str]]:
    """Ask for the answer to ``question`` from ``passage``."""
    return user_turn(ANSWER_INSTRUCTION.format(passage=passage) + f"\n\n{question}")


def replay_prompts() -> list[dict[str, str]]:
    """The shipped general chat prompts for replay (none of them is an evaluation or guard prompt)."""
    return read_jsonl(REPLAY_PROMPTS)
