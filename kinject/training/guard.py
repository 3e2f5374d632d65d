"""The forgetting guard: watch knowledge and drift while training, keep an adapter within a KL bound.

Forgetting tracks the KL divergence from the base model (Shenfeld et al., "RL's Razor", 2025), so every few steps
the guard measures KL(base || adapter) with the evaluation's scorer (``kinject.eval.drift``) over the base model's
own greedy answers to a few fixed general chat prompts (shipped, used by nothing else: not trained on, not evaluated
on), and the mean log-likelihood of the corpus's facts as chat answers to a held-out question form.
The adapter kept is, with ``keep="latest"``, the last checkpoint within ``guard_kl_max`` (the guard only undoes
drift: the likelihood of the pages' sentences is a proxy that preferred early, less knowing steps when the training
data is questions and answers), or with ``keep="best"`` the one with the most knowledge among those within it; with
``guard_patience`` the training stops once that many checks in a row found nothing better.

The base model's knowledge is measured the same way before training, so the decision says whether anything was
learnt: an adapter whose facts are no likelier than the base's (by ``LEARNT_MIN_GAIN``), or one that could only be
kept past the KL bound, is reported as "learnt nothing within the forgetting bound", with what to change, never as
a success.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..augment.facts import paragraphs, sentences
from ..eval.drift import BaseAnswer, base_answers, mean_kl
from ..eval.metrics import answer_logprob
from ..models.batch import training_off
from ..models.generate import adapter_off
from ..runs import read_jsonl
from ..runtime.progress import Progress
from ..settings.places import SHIPPED
from ..settings.stages import EvalConfig

GUARD_PROMPTS = SHIPPED / "guard_prompts.jsonl"
# As long as the evaluation's KL answers, so the bound means what the evaluation reports: KL per token depends on the
# answer's length (a reply's first tokens drift most: 32 tokens read 1.3-1.5 times 64 on the same adapters).
GUARD_ANSWER_TOKENS = EvalConfig().kl_max_new_tokens
GUARD_ITEMS = 16
# Not one of kinject.augment's training templates: a held-out way to ask.
GUARD_QUESTION = "What does the source say about {topic}?"
# Nats per token the facts must gain over the base for an adapter to count as having learnt them: a bar, not a
# measurement; below it the kept adapter's facts are within noise of the base's likelihood.
LEARNT_MIN_GAIN = 0.05
ADVICE = (
    "try more exposures per fact (e.g. --fact-exposures 60: the drift can fall back under the bound as the facts "
    "are learnt), a heavier replay KL (--kl-weight 8), more questions per fact (--questions-per-fact), or a looser "
    "bound (--guard-kl-max 0.2) if some drift is acceptable"
)


@dataclass
class Check:
    """One measurement during training."""

    step: int
    kl: float  # mean KL(base || adapter) per token on the guard prompts
    knowledge: float  # mean per-token log-likelihood of the corpus's facts as chat answers
    within: bool  # kl <= the bound


@dataclass
class Decision:
    """Which step's adapter the guard keeps, and why."""

    step: int | None
    reason: str
    checks: list[Check] = field(default_factory=list)
    stopped_early: bool = False
    learnt: bool | None = None  # whether the kept adapter knows more than the base within the bound (None: unknown)
    base_knowledge: float | None = None  # the base model's score on the same facts

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checks": [asdict(c) for c in self.checks]}


def knowledge_items(documents: list[dict[str, Any]], limit: int = GUARD_ITEMS) -> list[tuple[str, str]]:
    """(question, answer) pairs: each fact-stating sentence as the answer to the held-out question form, taken
    round-robin across documents so every page counts."""
    from ..augment import facts_of, sentence_subject

    per_doc = []
    for doc in documents:
        found = []
        title = (doc.get("title") or "").rstrip(".") or "this topic"
        for para in paragraphs(doc["text"]):
            for sentence in sentences(para):
                if len(sentence.split()) >= 5 and sentence.endswith(".") and facts_of(sentence):
                    # Never trained on, so a headline title may stand in (the guard's numbers stay comparable).
                    topic = sentence_subject(sentence) or title
                    found.append((GUARD_QUESTION.format(topic=topic), sentence))
        per_doc.append(found)
    items: list[tuple[str, str]] = []
    for rank in range(max((len(f) for f in per_doc), default=0)):
        items += [found[rank] for found in per_doc if rank < len(found)]
    return items[:limit]


class ForgettingGuard:
    """Measures the adapter at ``check_steps`` and remembers the best LoRA weights (a copy on the CPU)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        items: list[tuple[str, str]],
        kl_max: float,
        check_steps: list[int],
        patience: int = 0,
        progress: Progress | None = None,
        keep: str = "latest",
    ):
        self.model, self.tokenizer, self.kl_max, self.keep = model, tokenizer, kl_max, keep
        self.check_steps, self.patience = sorted(set(check_steps)), patience
        self.progress = progress or Progress()
        self.checks: list[Check] = []
        self.best: Check | None = None
        self.best_weights: dict[str, Any] | None = None
        self.since_best = 0
        self.stopped_early = False
        self.failed = ""
        self._items = [self._encode(q, a) for q, a in items]
        self._prompts = self._base_answers()
        self.base_knowledge = self._base_knowledge()

    # ------------------------------------------------------------------------------------------------ measuring
    def _encode(self, question: str, answer: str) -> tuple[list[int], int]:
        from ..corpus.blocks import chat_example

        ids, labels = chat_example(question, answer, self.tokenizer)
        start = next(i for i, label in enumerate(labels) if label != -100)
        return ids, start

    def _base_answers(self) -> list[BaseAnswer]:
        """The base's greedy answers to the guard prompts (generated once: the base does not change)."""
        prompts = guard_prompts()
        return base_answers(self.model, self.tokenizer, prompts, GUARD_ANSWER_TOKENS, len(prompts))

    def _base_knowledge(self) -> float | None:
        """The base model's knowledge score (the adapter switched off), the yardstick of "learnt"."""
        if not self._items:
            return None
        with adapter_off(self.model), training_off(self.model):
            return round(self._knowledge(), 5)

    def _knowledge(self) -> float:
        """The mean log-likelihood of the knowledge items' answers (evaluation's ``answer_logprob``)."""
        lls = [answer_logprob(self.model, ids[:start], ids[start:]) for ids, start in self._items]
        return sum(lls) / len(lls) if lls else 0.0

    def measure(self) -> tuple[float, float]:
        """(KL(base || adapter) per token on the guard prompts, the evaluation's measure; mean log-likelihood of
        the knowledge items)."""
        with training_off(self.model):
            per_prompt = mean_kl(self.model, self._prompts)
            knowledge = self._knowledge()
        kl = sum(per_prompt.values()) / len(per_prompt) if per_prompt else 0.0
        return kl, knowledge

    # ----------------------------------------------------------------------------------------------- deciding
    def state(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """What a checkpoint keeps of the guard (its checks and best step; the best step's weights)."""
        data = {
            "checks": [asdict(c) for c in self.checks],
            "best": self.best.step if self.best else None,
            "since_best": self.since_best,
            "base_knowledge": self.base_knowledge,
            "answer_tokens": GUARD_ANSWER_TOKENS,
        }
        return data, self.best_weights

    def restore(self, data: dict[str, Any], weights: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's ``state()``: its checks count as this training's."""
        self.checks = [Check(**c) for c in data.get("checks", [])]
        measured = data.get("answer_tokens", 32)  # checkpoints before it was saved measured 32 tokens
        if self.checks and measured != GUARD_ANSWER_TOKENS:
            self.progress.log(
                f"forgetting guard: the checks before this resume measured KL over {measured}-token answers, later "
                f"ones over {GUARD_ANSWER_TOKENS} (a shorter answer reads higher): the two are not on one scale"
            )
        self.best = next((c for c in self.checks if c.step == data.get("best")), None)
        self.best_weights = weights if self.best is not None else None
        self.since_best = int(data.get("since_best", 0))
        if data.get("base_knowledge") is not None:
            self.base_knowledge = data["base_knowledge"]

    def check(self, step: int) -> bool:
        """Measure at ``step``; remember it when it is the one to keep so far. True when training should stop early.

        A measurement that fails turns the guard off (logged) rather than failing the training."""
        if self.failed:
            return False
        try:
            kl, knowledge = self.measure()
        except Exception as exc:  # noqa: BLE001
            self.failed = f"{type(exc).__name__}: {exc}"
            self.progress.log(f"forgetting guard off at step {step}: {self.failed}")
            return False
        within = kl <= self.kl_max
        current = Check(step, round(kl, 5), round(knowledge, 5), within)
        self.checks.append(current)
        # A tie goes to the later step (more trained), e.g. when the corpus gave no knowledge items to score.
        better = within and (self.keep == "latest" or self.best is None or knowledge >= self.best.knowledge)
        if better:
            self.best, self.since_best = current, 0
            self.best_weights = {
                n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters() if "lora_" in n
            }
        else:
            self.since_best += 1
        self.progress.log(
            f"guard at step {step}: drift KL {kl:.4f} ({'within' if within else 'over'} {self.kl_max:g}), "
            f"log-likelihood of the facts {knowledge:.3f}{' (kept so far)' if better else ''}"
        )
        self.stopped_early = bool(self.patience and self.best is not None and self.since_best >= self.patience)
        return self.stopped_early

    def decide(self, final_step: int) -> Decision:
        """Which adapter to keep: the best check within the bound (its weights are put back into the model when
        it is not the last step); with none within the bound, the last step's, and the message says so."""
        base = self.base_knowledge
        if not self.checks:
            return Decision(None, f"no check was made{f' ({self.failed})' if self.failed else ''}", [])
        if self.best is None:
            lowest = min(self.checks, key=lambda c: c.kl)
            return Decision(
                final_step,
                f"learnt nothing within the forgetting bound: no check stayed within KL {self.kl_max:g} nats/token "
                f"of drift from the base model (the lowest drift was {lowest.kl:.4f}, at step {lowest.step}), so "
                f"the adapter of the last step, {final_step}, was kept, and it drifts from the base model; {ADVICE}",
                self.checks,
                self.stopped_early,
                learnt=False,
                base_knowledge=base,
            )
        b = self.best
        learnt = None if base is None else b.knowledge - base >= LEARNT_MIN_GAIN
        if b.step != final_step and self.best_weights is not None:
            params = dict(self.model.named_parameters())
            for name, value in self.best_weights.items():
                params[name].data.copy_(value.to(params[name].device))
        checks = f"{self.patience} check{'' if self.patience == 1 else 's'}"
        how = f"stopped early at step {final_step} ({checks} without a better adapter); " if self.stopped_early else ""
        drift = f"drift from the base KL {b.kl:.4f} nats/token against a bound of {self.kl_max:g}"
        later = "" if b.step == self.checks[-1].step else self._later_text(b)
        if learnt is False:
            reason = (
                f"learnt nothing within the forgetting bound: {how}kept the adapter of step {b.step} of "
                f"{final_step} ({drift}), but it knows your pages' facts no better than the base model "
                f"(log-likelihood {b.knowledge:.3f} per token against the base's {base:.3f}; it needs "
                f"{LEARNT_MIN_GAIN:g} more), and "
                f"{later or 'no step gained more'}; {ADVICE}"
            )
        else:
            against = "" if base is None else f" (the base model: {base:.3f})"
            which = "the latest" if self.keep == "latest" else "the one that knew your pages' facts best"
            reason = (
                f"{how}kept the adapter of step {b.step} of {final_step}, {which} "
                f"within the forgetting bound: {drift}, log-likelihood of the facts {b.knowledge:.3f} per "
                f"token{against}" + (f"; {later}" if later else "")
            )
        return Decision(b.step, reason, self.checks, self.stopped_early, learnt=learnt, base_knowledge=base)

    def _later_text(self, best: Check) -> str:
        """What the checks after the kept one found, with the last one's numbers."""
        later = [c for c in self.checks if c.step > best.step]
        last = later[-1]
        numbers = f"the last, step {last.step}: KL {last.kl:.4f}, log-likelihood {last.knowledge:.3f}"
        if all(not c.within for c in later):
            return f"every later check drifted past the bound ({numbers})"
        return f"later checks did no better within the bound ({numbers})"


def check_steps(total_steps: int, checks: int, start: int = 0) -> list[int]:
    """``checks`` steps evenly spread over (start, total_steps], the last one included."""
    if checks <= 0 or total_steps <= start:
        return []
    span = total_steps - start
    return sorted({start + max(1, round(span * (k + 1) / checks)) for k in range(checks)})


def guard_prompts() -> list[dict[str, str]]:
    """The guard's general chat prompts (used by nothing else)."""
    return read_jsonl(GUARD_PROMPTS)
