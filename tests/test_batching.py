"""The engine's continuous batching (``kinject.serving.batcher`` over ``kinject.models.batch``): concurrent requests
generate in one batch, each answering what it answers alone (greedy, and seeded sampling), across the base and an
adapter; a request joins a running batch; a cancelled request leaves within one step while the others go on."""

from __future__ import annotations

import threading

import pytest
from test_serve import trained  # noqa: F401 - the tiny run with an adapter, as a fixture

from kinject.serving.engine import Engine, Params

PROMPTS = ["Tell me about P5.", "What GPUs power P5?", "Hello there", "How much memory has a p5.48xlarge?"]


@pytest.fixture(scope="module")
def engine(trained, tiny_model_dir):  # noqa: F811
    return Engine(str(tiny_model_dir), {"p5": trained}, max_batch_size=4)


def ids(engine: Engine, text: str) -> list[int]:
    return engine.encode(None, text)


def together(engine: Engine, jobs: list[tuple[str | None, list[int], Params]]) -> list:
    """Run ``jobs`` from threads released at once; their generations in order."""
    out: list = [None] * len(jobs)
    gate = threading.Barrier(len(jobs))

    def one(i: int) -> None:
        gate.wait()
        out[i] = engine.generate(*jobs[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def reference(engine: Engine, target: str | None, prompt: list[int], n: int) -> list[int]:
    """Greedy tokens from transformers' own ``generate``, the adapter set the plain peft way (not the batcher)."""
    import contextlib

    import torch

    model = engine.model
    if target is None:
        context = model.disable_adapter()
    else:
        model.set_adapter(engine._peft_names[target])
        context = contextlib.nullcontext()
    with context, torch.no_grad(), engine._lock:
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=engine.tokenizer.eos_token_id,
        )
    return out[0, len(prompt) :].tolist()


def test_concurrent_requests_share_a_batch_and_answer_as_they_do_alone(engine):
    jobs = [(("p5", None)[i % 2], ids(engine, text), Params(max_new_tokens=12)) for i, text in enumerate(PROMPTS)]
    jobs += [(("p5", None)[i % 2], ids(engine, PROMPTS[0]), Params(max_new_tokens=12)) for i in (1, 2)]
    alone = [engine.generate(*job) for job in jobs]
    for (target, prompt, _), g in zip(jobs, alone, strict=True):
        assert [t.id for t in g.tokens] == reference(engine, target, prompt, 12)[: len(g.tokens)]
    assert alone[-1].text != alone[-2].text  # the adapter answers the same prompt unlike the base
    steps_before = engine._batcher.steps
    batched = together(engine, jobs)
    assert engine._batcher.widest >= 2  # some passes held several requests (base and adapter rows together)
    assert engine._batcher.steps - steps_before < sum(len(g.tokens) for g in alone)
    for a, b in zip(alone, batched, strict=True):
        assert [t.id for t in b.tokens] == [t.id for t in a.tokens]
        assert (b.text, b.finish_reason) == (a.text, a.finish_reason)


@pytest.fixture(scope="module")
def bundled(bundled_model_dir):
    """The bundled 135M chat model: unlike the tiny random one, its answers depend on every position."""
    return Engine(str(bundled_model_dir), max_batch_size=4)


def chat(engine: Engine, text: str) -> list[int]:
    return engine.chat_ids(None, [{"role": "user", "content": text}])


def test_the_bundled_model_answers_alike_in_a_batch_of_different_lengths(bundled):
    jobs = [(None, chat(bundled, text), Params(max_new_tokens=10)) for text in ("Why do cats purr?", PROMPTS[3])]
    assert len(jobs[0][1]) != len(jobs[1][1])  # rows left-padded to one length
    alone = [bundled.generate(*job) for job in jobs]
    batched = together(bundled, jobs)
    assert bundled._batcher.widest == 2
    assert [g.text for g in batched] == [g.text for g in alone]


def test_a_request_joins_a_running_batch(bundled):
    engine = bundled
    first, second = chat(engine, "Describe the water cycle."), chat(engine, "What is the capital of France?")
    expected = engine.generate(None, second, Params(max_new_tokens=8))
    expected_long = engine.generate(None, first, Params(max_new_tokens=24))
    joined: dict = {}

    def after_third_token(token) -> None:
        if "thread" not in joined and len(seen) == 3:
            joined["thread"] = threading.Thread(
                target=lambda: joined.setdefault("gen", engine.generate(None, second, Params(max_new_tokens=8)))
            )
            joined["thread"].start()

    seen: list = []

    def on_token(token) -> None:
        seen.append(token)
        after_third_token(token)

    long = engine.generate(None, first, Params(max_new_tokens=24), on_token=on_token)
    joined["thread"].join(60)
    assert len(long.tokens) > 3 and long.text == expected_long.text
    assert joined["gen"].text == expected.text and joined["gen"].queued_s < long.generate_s


def test_a_cancelled_request_leaves_within_a_step_and_the_others_go_on(engine):
    a, b = ids(engine, PROMPTS[1]), ids(engine, PROMPTS[2])
    expected = engine.generate(None, b, Params(max_new_tokens=20))
    cancel = threading.Event()
    made: list = []

    def on_token(token) -> None:
        made.append(token)
        if len(made) == 2:
            cancel.set()

    out: dict = {}
    gate = threading.Barrier(2)

    def cancelled() -> None:
        gate.wait()
        out["a"] = engine.generate(None, a, Params(max_new_tokens=40), on_token, cancel)

    thread = threading.Thread(target=cancelled)
    thread.start()
    gate.wait()
    other = engine.generate(None, b, Params(max_new_tokens=20))
    thread.join(60)
    assert out["a"].finish_reason == "cancelled" and len(out["a"].tokens) <= 3
    assert [t.id for t in other.tokens] == [t.id for t in expected.tokens]


def test_rows_keep_their_own_settings(engine):
    prompt = ids(engine, PROMPTS[0])
    seeded = Params(max_new_tokens=10, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    penalised = Params(max_new_tokens=10, repetition_penalty=1.3)
    alone = [engine.generate(None, prompt, seeded), engine.generate("p5", prompt, penalised)]
    batched = together(engine, [(None, prompt, seeded), ("p5", prompt, penalised)])
    for a, b in zip(alone, batched, strict=True):
        assert [t.id for t in b.tokens] == [t.id for t in a.tokens]
    assert batched[0].seed == 7
    other_seed = engine.generate(None, prompt, Params(**{**seeded.__dict__, "seed": 8}))
    greedy = engine.generate(None, prompt, Params(max_new_tokens=10))
    assert [t.id for t in other_seed.tokens] != [t.id for t in alone[0].tokens] or [t.id for t in greedy.tokens] != [
        t.id for t in alone[0].tokens
    ]


def test_more_requests_than_the_batch_holds_wait_for_a_place(engine):
    jobs = [(None, ids(engine, f"Count to {i}."), Params(max_new_tokens=5)) for i in range(7)]
    alone = [engine.generate(*job) for job in jobs]
    batched = together(engine, jobs)
    assert engine._batcher.widest <= engine.max_batch_size == 4
    assert [g.text for g in batched] == [g.text for g in alone]
    assert all(g.queued_s >= 0 and g.generate_s > 0 for g in batched)


def test_a_prompt_that_fails_to_prefill_fails_alone(engine, monkeypatch):
    """A new request whose prompt cannot be run (out of memory, say) gets TGI's generation error; the requests
    already in the batch go on to their own answers."""
    from kinject.serving.errors import ServeError

    good, bad = ids(engine, PROMPTS[1]), ids(engine, "This prompt fails.")
    expected = engine.generate(None, good, Params(max_new_tokens=16))
    batcher = engine._batcher
    prefill = batcher._prefill_group

    def failing(model, admitted, share):
        if any(seq.input_ids == bad for seq in admitted):
            raise RuntimeError("out of memory (planted)")
        return prefill(model, admitted, share)

    monkeypatch.setattr(batcher, "_prefill_group", failing)
    failed: dict = {}

    def ask_bad() -> None:
        try:
            engine.generate(None, bad, Params(max_new_tokens=4))
        except ServeError as exc:
            failed["error"] = exc

    threads: list = []

    def on_token(token) -> None:
        if not threads:
            threads.append(threading.Thread(target=ask_bad))
            threads[0].start()

    out = engine.generate(None, good, Params(max_new_tokens=16), on_token=on_token)
    threads[0].join(60)
    assert failed["error"].status == 424 and "out of memory (planted)" in str(failed["error"])
    assert [t.id for t in out.tokens] == [t.id for t in expected.tokens]


def test_a_stopped_batcher_ends_its_requests_and_its_thread_before_the_interpreter_exits(engine):
    from kinject.serving import batcher as batching

    batcher = engine._batcher
    assert batcher in batching._LIVE  # the exit hook stops it (a thread inside a forward pass aborted the process)
    prompt = ids(engine, PROMPTS[0])
    out: dict = {}
    started = threading.Event()

    def long() -> None:
        out["a"] = engine.generate(None, prompt, Params(max_new_tokens=400), lambda _: started.set())

    thread = threading.Thread(target=long)
    thread.start()
    assert started.wait(30)
    try:
        batching._stop_all()  # what atexit runs
        thread.join(30)
        assert batcher._thread is None
        assert out["a"].finish_reason == "cancelled" and len(out["a"].tokens) < 400
        # A request after it (a server thread still answering) ends at once, and no loop starts again.
        late = engine.generate(None, prompt, Params(max_new_tokens=3))
        assert late.finish_reason == "cancelled" and not late.tokens and batcher._thread is None
    finally:
        batching._EXITING.clear()
    # A batcher stopped by itself starts its loop again for the next request.
    batcher.stop(30)
    assert engine.generate(None, prompt, Params(max_new_tokens=3)).finish_reason in ("length", "eos_token")


@pytest.fixture(scope="module")
def bundled_pair(bundled_model_dir):
    """The bundled model's tokenizer and model, loaded once for this module's decoder tests."""
    from kinject.models.loading import load_model, load_tokenizer, resolve_model

    resolved = resolve_model(str(bundled_model_dir))
    return load_tokenizer(resolved), load_model(resolved).eval()


def watch_forward(monkeypatch) -> list:
    """The shape of every forward pass's input ids the decoder runs from now on in this test."""
    from kinject.models import batch

    shapes = []
    forward = batch.Batch._forward

    def spy(self, model, ids, *args):
        shapes.append(tuple(ids.shape))
        return forward(self, model, ids, *args)

    monkeypatch.setattr(batch.Batch, "_forward", spy)
    return shapes


def assert_as_alone(model, tokenizer, inputs: list, params: list, together: list) -> None:
    """Every row of ``together`` has the tokens, and within 1e-3 the log-probabilities, of its prompt decoded alone."""
    from kinject.models import batch

    alone = [batch.decode(model, tokenizer, [x], [p])[0].tokens for x, p in zip(inputs, params, strict=True)]
    assert [[t.id for t in row] for row in together] == [[t.id for t in row] for row in alone]
    assert all(
        abs(a.logprob - b.logprob) < 1e-3
        for r1, r2 in zip(together, alone, strict=True)
        for a, b in zip(r1, r2, strict=True)
    )


def test_a_prefix_every_prompt_shares_runs_once_and_changes_no_answer(bundled_pair, monkeypatch):
    """Augmentation's prompts open with the same worked examples: a batch runs that prefix once, copies its keys and
    values to every row and runs only each row's rest, and every row answers what it answers alone."""
    from kinject.augment.prompts import rewrite_conversation
    from kinject.models import batch
    from kinject.models.generate import chat_prompt_ids

    tokenizer, model = bundled_pair
    questions = [
        "How many passengers does the Lumora Grand carry?",
        "Who opened the Lumora line?",
        "The first departure of the Lumora line leaves Pellisk at what time every morning?",
    ]
    inputs = [chat_prompt_ids(tokenizer, rewrite_conversation(q)) for q in questions]
    params = [Params(max_new_tokens=n) for n in (12, 5, 9)]  # rows leave one by one: the batch drops them
    shapes = watch_forward(monkeypatch)
    together = [seq.tokens for seq in batch.decode(model, tokenizer, inputs, params)]
    shared = shapes[0][1]
    assert shapes[0][0] == 1 and shared >= batch.SHARED_PREFIX
    assert shapes[1] == (len(inputs), max(map(len, inputs)) - shared)  # the rows ran only what follows the prefix
    assert_as_alone(model, tokenizer, inputs, params, together)


PASSAGES = [
    "The Lumora Grand is a night ferry of the Lumora line, built by Feldt & Sorn in Pellisk in 2019. It carries 410 "
    "passengers in 120 cabins and crosses the Vell Sound in six hours, leaving Pellisk at 21:40 every evening.",
    "Harrow Fields is a wind farm of 38 turbines off the coast of Dunmere, run by Castel Energy since 2021. Its "
    "turbines stand 180 metres tall and together they supply about 90,000 homes with power through one cable.",
]


def test_rows_of_two_prefixes_each_run_theirs_once_and_change_no_answer(bundled_pair, monkeypatch):
    """The round trip's prompts: questions about two passages, and a short prompt, join a batch that is running
    another. ``batches`` keeps a passage's questions in one batch, each passage's rows run their shared prefix once,
    the short prompt runs whole, the groups' caches merge into the running batch's, and every row answers what it
    answers alone."""
    from kinject.augment.prompts import answer_conversation
    from kinject.models import batch
    from kinject.models.generate import batches, chat_prompt_ids
    from kinject.models.sequences import Sequence

    tokenizer, model = bundled_pair
    asked = [  # by length, the two passages' questions interleave
        (0, "Who built it?"),
        (1, "How many turbines stand in the Harrow Fields wind farm?"),
        (0, "How many passengers does the Lumora Grand night ferry carry on each of its crossings of the Vell Sound?"),
        (1, "Who has run the wind farm off the coast of Dunmere since 2021?"),
    ]
    inputs = [chat_prompt_ids(tokenizer, answer_conversation(PASSAGES[p], q)) for p, q in asked]
    inputs += [chat_prompt_ids(tokenizer, [{"role": "user", "content": text}]) for text in ("Hi", "Hello there")]
    assert sorted(map(sorted, batches(inputs[:5], 2))) == [[0, 2], [1, 3], [4]]  # a passage's questions together
    params = [Params(max_new_tokens=n) for n in (6, 9, 4, 7, 5, 12)]
    shapes = watch_forward(monkeypatch)
    running = batch.Batch(lambda: model, as_is=True)
    rows = [Sequence(tokenizer, ids, p) for ids, p in zip(inputs, params, strict=True)]
    running._step(rows[5:])  # "Hello there" runs first; the others join it
    running._step(rows[:5])
    while running.running:
        running._step([])
    short, prefix_a, rest_a, prefix_b, rest_b = shapes[2:7]
    assert short == (1, len(inputs[4]))  # the prompt that shares nothing, whole
    assert prefix_a[0] == prefix_b[0] == 1 and min(prefix_a[1], prefix_b[1]) >= batch.SHARED_PREFIX
    assert rest_a[0] == rest_b[0] == 2 and rest_a[1] + prefix_a[1] == max(len(inputs[0]), len(inputs[2]))
    assert rest_b[1] + prefix_b[1] == max(len(inputs[1]), len(inputs[3]))
    assert shapes[7][0] == len(inputs)  # then every row decodes in one pass
    assert_as_alone(model, tokenizer, inputs, params, [seq.tokens for seq in rows])


def test_a_group_that_fails_to_prefill_leaves_the_running_rows_as_they_were(bundled_pair, monkeypatch):
    """Two passages' questions join a running batch and the second passage's prefill fails (out of memory, say):
    every row admitted with it ends with the error, and the running row goes on to the answer it gives alone."""
    from kinject.augment.prompts import answer_conversation
    from kinject.models import batch
    from kinject.models.generate import chat_prompt_ids
    from kinject.models.sequences import Sequence

    tokenizer, model = bundled_pair
    asked = [(0, "Who built it?"), (1, "Who runs it?"), (0, "When was it built?"), (1, "How tall are its turbines?")]
    inputs = [chat_prompt_ids(tokenizer, answer_conversation(PASSAGES[p], q)) for p, q in asked]
    first = chat_prompt_ids(tokenizer, [{"role": "user", "content": "Hello there"}])
    prefill = batch.Batch._prefill_group

    def failing(self, model, rows, share):
        if rows[0].input_ids == inputs[1]:
            raise RuntimeError("out of memory (planted)")
        return prefill(self, model, rows, share)

    monkeypatch.setattr(batch.Batch, "_prefill_group", failing)
    running = batch.Batch(lambda: model, as_is=True)
    alone = batch.decode(model, tokenizer, [first], [Params(max_new_tokens=10)])[0].tokens
    row = Sequence(tokenizer, first, Params(max_new_tokens=10))
    joining = [Sequence(tokenizer, ids, Params(max_new_tokens=4)) for ids in inputs]
    running._step([row])
    running._step(joining)
    assert running.running == 1 and all("out of memory (planted)" in str(seq.error) for seq in joining)
    while running.running:
        running._step([])
    assert [t.id for t in row.tokens] == [t.id for t in alone] and row.error is None
