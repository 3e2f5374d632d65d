"""The forgetting guard on a tiny model: it measures drift and knowledge while training, keeps the best adapter
within its KL bound (a high learning rate forces the KL up), stops early when asked, and says what it did."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import TINY_BLOCKS, StopAt

from kinject.runs import RunDir
from kinject.runtime.jobs import JobManager
from kinject.settings.training import TrainConfig
from kinject.training.guard import check_steps, knowledge_items
from kinject.training.job import submit_training
from kinject.training.pipeline import train

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 6


def hot(**kw) -> TrainConfig:
    """A learning rate high enough to pull the tiny model away from its base within a few steps (fp32: the checks
    here compare KLs measured in training with ones measured afterwards, and bf16 autocast moves them by ~0.3%)."""
    base = dict(
        preset="cpu-demo",
        max_steps=8,
        learning_rate=5e-2,
        quantization="none",
        guard_checks=4,
        cpu_bf16="off",
        guard_keep="best",
    )
    return TrainConfig(**{**base, **kw})


def _checks(run) -> list[dict]:
    return RunDir(run).read_adapter_meta()["guard"]["checks"]


def test_check_steps_spread_over_training():
    assert check_steps(100, 4) == [25, 50, 75, 100]
    assert check_steps(10, 3, start=4) == [6, 8, 10]  # after a resume, over what is left
    assert check_steps(3, 6) == [1, 2, 3] and check_steps(10, 0) == []


def test_knowledge_items_are_fact_sentences_asked_a_held_out_way():
    items = knowledge_items([{"text": TEXT, "title": "P5"}])
    assert items and all(q.startswith("What does the source say about") for q, _ in items)
    assert {a for _, a in items} <= set(TEXT.replace("\n", " ").split(". ")) | {
        s + "." for s in TEXT.replace("\n", " ").split(". ")
    }


def test_the_guard_measures_a_growing_kl(tiny_run):
    train(tiny_run, hot(guard_kl_max=1e9), blocks=TINY_BLOCKS)
    checks = _checks(tiny_run)
    assert [c["step"] for c in checks] == [2, 4, 6, 8]
    assert checks[-1]["kl"] > checks[0]["kl"] > 0  # the adapter drifts from the base as it trains


def test_the_guard_keeps_the_best_adapter_within_its_bound(tiny_run):
    train(tiny_run, hot(guard_kl_max=1e9), blocks=TINY_BLOCKS)
    kls = [c["kl"] for c in _checks(tiny_run)]
    bound = (kls[0] + kls[-1]) / 2  # the first check within, the last beyond: the same seed trains the same way
    result = train(tiny_run, hot(guard_kl_max=bound), blocks=TINY_BLOCKS)
    meta = RunDir(tiny_run).read_adapter_meta()
    within = [c for c in meta["guard"]["checks"] if c["kl"] <= bound]
    best = max(within, key=lambda c: c["knowledge"])
    assert meta["kept_step"] == best["step"] == result.kept_step < 8
    assert f"kept the adapter of step {best['step']} of 8" in result.note and "within" in result.note
    # The saved adapter is that step's: its KL, measured again, is the check's.
    from kinject.models.generate import load_for_run
    from kinject.training.guard import ForgettingGuard

    loaded = load_for_run(tiny_run)
    guard = ForgettingGuard(loaded.model, loaded.tokenizer, [("Q?", "A.")], bound, [1])
    assert guard.measure()[0] == pytest.approx(best["kl"], rel=1e-3, abs=5e-6)  # checks keep 5 decimals


def test_the_latest_guard_keeps_the_last_step_within_its_bound(tiny_run):
    """keep='latest' only undoes drift: the last check within the bound is kept, whatever the sentences'
    likelihood says."""
    train(tiny_run, hot(guard_kl_max=1e9, guard_keep="latest"), blocks=TINY_BLOCKS)
    assert RunDir(tiny_run).read_adapter_meta()["kept_step"] == 8
    kls = [c["kl"] for c in _checks(tiny_run)]
    bound = (kls[1] + kls[2]) / 2  # steps 2 and 4 within, 6 and 8 beyond
    result = train(tiny_run, hot(guard_kl_max=bound, guard_keep="latest"), blocks=TINY_BLOCKS)
    assert result.kept_step == 4 and "kept the adapter of step 4 of 8" in result.note


def test_no_check_within_the_bound_keeps_the_last_step_and_says_so(tiny_run):
    result = train(tiny_run, hot(guard_kl_max=1e-12), blocks=TINY_BLOCKS)
    assert result.kept_step == 8 and "no check stayed within KL 1e-12" in result.note


def test_patience_stops_training_early(tiny_run):
    result = train(
        tiny_run, hot(max_steps=40, guard_checks=20, guard_kl_max=1e-12, guard_patience=2), blocks=TINY_BLOCKS
    )
    assert result.step == 40  # never within the bound: there is no best to wait for, so it trains on
    result = train(
        tiny_run, hot(max_steps=40, guard_checks=20, guard_kl_max=1e9, guard_patience=1), blocks=TINY_BLOCKS
    )
    checks = RunDir(tiny_run).read_adapter_meta()["guard"]["checks"]
    # With this seed the knowledge score rises at steps 2 and 4 and falls at 6: one check without a better
    # adapter, so training stops there and keeps step 4.
    assert result.step == checks[-1]["step"] < 40 and result.status == "done" and "stopped early" in result.note
    assert checks[-1]["knowledge"] <= max(c["knowledge"] for c in checks[:-1])
    assert result.kept_step == max(checks, key=lambda c: c["knowledge"])["step"] < result.step


def test_the_job_status_says_what_the_guard_kept(tiny_run):
    jobs = JobManager()
    submit_training(jobs, tiny_run, hot(guard_kl_max=1e-12), blocks=TINY_BLOCKS)
    state = jobs.wait(120)
    assert state.status == "done"
    assert "forgetting guard: learnt nothing within the forgetting bound: no check stayed within" in state.message


def test_guard_does_not_change_what_is_trained(tiny_run):
    """Measuring in between must not move the training: same seed, same final weights, guard on or off."""
    from safetensors.torch import load_file

    train(tiny_run, hot(guard_checks=0), blocks=TINY_BLOCKS)
    off = load_file(str(RunDir(tiny_run).adapter_weights()))
    train(tiny_run, hot(guard_checks=4, guard_kl_max=1e-12), blocks=TINY_BLOCKS)  # keeps the last step
    on = load_file(str(RunDir(tiny_run).adapter_weights()))
    assert off.keys() == on.keys() and all(torch.allclose(off[k], on[k], atol=1e-6) for k in off)


def test_a_tie_goes_to_the_later_step(tiny_run, monkeypatch):
    from kinject.training.guard import ForgettingGuard

    # No knowledge to tell checks apart (as with a corpus that states no fact): the most trained adapter within the
    # bound is kept, not the barely trained first one.
    monkeypatch.setattr(ForgettingGuard, "measure", lambda self: (0.01, 0.0))
    result = train(tiny_run, hot(guard_checks=4, guard_kl_max=0.1), blocks=TINY_BLOCKS)
    assert result.kept_step == result.step == 8 and "kept the adapter of step 8 of 8" in result.note


def test_the_guard_keeps_its_checks_across_stop_and_resume(tiny_run):
    config = hot(max_steps=8, guard_checks=4, guard_kl_max=1e9, save_steps=100)
    stopped = train(tiny_run, config, StopAt(4), blocks=TINY_BLOCKS)  # checks at 2 and 4, stops after step 5
    assert stopped.status == "stopped" and [c["step"] for c in _checks(tiny_run)] == [2, 4]
    resumed = train(tiny_run, config, resume=True)
    assert resumed.status == "done" and resumed.step == 8
    checks = _checks(tiny_run)
    assert [c["step"] for c in checks] == [2, 4, 6, 8]  # the same schedule as without the stop, none lost
    best = max(checks, key=lambda c: c["knowledge"])
    assert resumed.kept_step == best["step"]


# ------------------------------------------------------------------------------- did it learn anything at all


def test_an_adapter_that_learnt_is_told_from_one_that_did_not(tiny_run, monkeypatch):
    import kinject.training.guard

    # The tiny random model gains about 0.04 nats/token on the facts in 8 hot steps (the bundled model far more):
    # a bar it can clear, so that the verdict is what is tested.
    monkeypatch.setattr(kinject.training.guard, "LEARNT_MIN_GAIN", 0.01)
    learnt = train(tiny_run, hot(guard_kl_max=1e9), blocks=TINY_BLOCKS)
    meta = RunDir(tiny_run).read_adapter_meta()["guard"]
    assert learnt.learnt is True and meta["learnt"] is True and "learnt nothing" not in learnt.note
    assert meta["base_knowledge"] < max(c["knowledge"] for c in meta["checks"])
    # A learning rate too small to move the weights: within the bound, but the base in disguise.
    idle = train(tiny_run, hot(guard_kl_max=1e9, learning_rate=1e-9), blocks=TINY_BLOCKS)
    assert idle.learnt is False
    assert "learnt nothing within the forgetting bound" in idle.note and "no better than the base" in idle.note
    assert "--fact-exposures" in idle.note and "--kl-weight" in idle.note  # and what to change


def test_drift_past_the_bound_is_reported_as_nothing_learnt(tiny_run):
    result = train(tiny_run, hot(guard_kl_max=1e-12), blocks=TINY_BLOCKS)  # KL forced over the bound
    assert result.learnt is False and "learnt nothing within the forgetting bound" in result.note
    jobs = JobManager()
    submit_training(jobs, tiny_run, hot(guard_kl_max=1e-12), blocks=TINY_BLOCKS)
    state = jobs.wait(120)
    assert state.status == "done"
    assert state.message.startswith("done at step 8/8: the adapter learnt nothing within the forgetting bound")


def test_the_card_and_the_evaluation_say_nothing_was_learnt(tiny_run):
    from kinject.sharing.card import model_card
    from kinject.web.eval_view import eval_summary

    train(tiny_run, hot(guard_kl_max=1e-12), blocks=TINY_BLOCKS)
    run = RunDir(tiny_run)
    assert "This adapter learnt nothing within the forgetting bound" in model_card(run, "me/x")
    guard = run.read_adapter_meta()["guard"]
    data = {"settings": {"guard": {"learnt": False, "reason": guard["reason"]}}, "base": {}, "adapter": {}}
    assert "The adapter learnt nothing within the forgetting bound" in eval_summary(data)
    data["settings"]["guard"]["learnt"] = True
    assert "learnt nothing" not in eval_summary(data)


def _guard_of(checks, best: int | None, base: float | None, kl_max: float = 0.1, patience: int = 0):
    """A guard that has made ``checks`` (step, kl, knowledge), ``best`` the step it keeps: no model needed."""
    from kinject.runtime.progress import Progress
    from kinject.training.guard import Check, ForgettingGuard

    guard = object.__new__(ForgettingGuard)
    guard.kl_max, guard.patience, guard.failed, guard.progress = kl_max, patience, "", Progress()
    guard.keep = "best"
    guard.checks = [Check(step, kl, knowledge, kl <= kl_max) for step, kl, knowledge in checks]
    guard.best = next((c for c in guard.checks if c.step == best), None)
    guard.best_weights, guard.base_knowledge = None, base
    guard.stopped_early = bool(patience)
    return guard


def test_the_guard_says_what_it_kept_in_words():
    """Every number the message gives says what it is: the step kept of how many, the drift against its bound, the
    facts' log-likelihood against the base's, and what the last check found."""
    checks = [(2, 0.006, -3.272), (4, 0.05, -3.4), (13, 0.25, -3.1)]
    reason = _guard_of(checks, 2, -3.630).decide(13).reason
    assert reason == (
        "kept the adapter of step 2 of 13, the one that knew your pages' facts best within the forgetting bound: "
        "drift from the base KL 0.0060 nats/token against a bound of 0.1, log-likelihood of the facts -3.272 per "
        "token (the base model: -3.630); later checks did no better within the bound (the last, step 13: KL 0.2500, "
        "log-likelihood -3.100)"
    )
    assert "kept step" not in reason and "knowledge -" not in reason
    over = _guard_of([(2, 0.006, -3.272), (13, 0.25, -3.1)], 2, None).decide(13).reason
    assert "per token; every later check drifted past the bound (the last, step 13: KL 0.2500" in over
    assert "the base model" not in over  # no base score measured: none quoted
    early = _guard_of([(2, 0.006, -3.272), (4, 0.05, -3.4)], 2, -3.630, patience=1).decide(4).reason
    assert early.startswith("stopped early at step 4 (1 check without a better adapter); kept the adapter of step 2")


def test_the_guard_says_in_words_that_nothing_was_learnt():
    idle = _guard_of([(2, 0.006, -3.272), (8, 0.007, -3.28)], 2, -3.29).decide(8).reason
    assert idle.startswith(
        "learnt nothing within the forgetting bound: kept the adapter of step 2 of 8 (drift from the base KL 0.0060 "
        "nats/token against a bound of 0.1), but it knows your pages' facts no better than the base model "
        "(log-likelihood -3.272 per token against the base's -3.290; it needs 0.05 more), and later checks did no "
        "better within the bound (the last, step 8: KL 0.0070, log-likelihood -3.280); try more exposures per fact"
    )
    drifted = _guard_of([(2, 0.5, -3.0), (8, 0.4, -2.9)], None, -3.29).decide(8).reason
    assert drifted.startswith(
        "learnt nothing within the forgetting bound: no check stayed within KL 0.1 nats/token of drift from the base "
        "model (the lowest drift was 0.4000, at step 8), so the adapter of the last step, 8, was kept"
    )


def test_a_resume_across_a_change_of_the_guards_answer_length_says_so():
    """Checkpoints saved before the guard measured 64-token answers hold 32-token checks, which read higher: a
    resume from one keeps them and says they are on another scale; one saved now says nothing."""
    from kinject.runtime.progress import Progress
    from kinject.training.guard import GUARD_ANSWER_TOKENS, Check, ForgettingGuard

    class Logged(Progress):
        def __init__(self):
            self.lines = []

        def log(self, message):
            self.lines.append(message)

    guard = ForgettingGuard.__new__(ForgettingGuard)  # restore() reads no model
    guard.progress = Logged()
    old = {"checks": [{"step": 4, "kl": 0.05, "knowledge": -2.0, "within": True}], "best": 4, "since_best": 0}
    guard.restore(old, {"w": 1})
    assert guard.best == Check(4, 0.05, -2.0, True) and guard.best_weights == {"w": 1}
    assert guard.progress.lines == [
        f"forgetting guard: the checks before this resume measured KL over 32-token answers, later ones over "
        f"{GUARD_ANSWER_TOKENS} (a shorter answer reads higher): the two are not on one scale"
    ]
    guard.progress = Logged()
    guard.restore({**old, "answer_tokens": GUARD_ANSWER_TOKENS}, {"w": 1})
    assert guard.progress.lines == []
