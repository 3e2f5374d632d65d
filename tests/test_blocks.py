"""Packing keeps every token, never overfills a block, and masks exactly the padding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinject.corpus.blocks import IGNORE_INDEX, document_tokens, ensure_blocks, pack_blocks, pack_token_lists
from kinject.runs import RunDir
from kinject.runtime.progress import RecordingProgress
from kinject.settings.stages import BlocksConfig

TEXT = "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. " * 20

PAD = 0
docs_strategy = st.lists(st.lists(st.integers(1, 1000), min_size=1, max_size=120), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(docs=docs_strategy, block_size=st.integers(1, 64), pad_last=st.booleans())
def test_packing_properties(docs, block_size, pad_last):
    blocks, total = pack_token_lists(docs, block_size, PAD, pad_last)
    real = [tok for b in blocks for tok, m in zip(b["input_ids"], b["attention_mask"], strict=True) if m]
    assert real == [tok for d in docs for tok in d]  # nothing dropped, order kept
    assert total == len(real)
    for i, b in enumerate(blocks):
        n = len(b["input_ids"])
        assert 0 < n <= block_size
        assert len(b["labels"]) == len(b["attention_mask"]) == len(b["position_ids"]) == n
        for tok, lab, m in zip(b["input_ids"], b["labels"], b["attention_mask"], strict=True):
            assert (lab == IGNORE_INDEX) == (m == 0)  # labels mask exactly the padding
            if m:
                assert lab == tok
        if i < len(blocks) - 1:
            assert n == block_size and all(b["attention_mask"])  # only the last block may be short or padded
        elif pad_last:
            assert n == block_size


@settings(max_examples=100, deadline=None)
@given(docs=docs_strategy, block_size=st.integers(1, 64))
def test_position_ids_restart_per_document_and_block(docs, block_size):
    blocks, _ = pack_token_lists(docs, block_size, PAD)
    flat_pos = [p for b in blocks for p in b["position_ids"]]
    starts = {0}
    offset = 0
    for d in docs:
        starts.add(offset)
        offset += len(d)
    starts |= set(range(0, offset, block_size))
    expected, last = [], 0
    for i in range(offset):
        last = 0 if i in starts else last + 1
        expected.append(last)
    assert flat_pos == expected
    assert max(flat_pos) < block_size


def test_pack_blocks_real_tokenizer(bundled_tokenizer):
    texts = ["First document about P5 instances.", "Second one, a bit longer " * 40, "Third."]
    dataset, stats = pack_blocks(texts, bundled_tokenizer, BlocksConfig(block_size=64))
    expected = [t for text in texts for t in document_tokens(text, bundled_tokenizer)]
    got = [t for row in dataset for t, m in zip(row["input_ids"], row["attention_mask"], strict=True) if m]
    assert got == expected
    eos = bundled_tokenizer.eos_token_id
    assert expected.count(eos) >= len(texts)  # every document ends with EOS
    assert stats.corpus_tokens == stats.tokens_kept == len(expected)
    assert stats.blocks == len(dataset) == -(-len(expected) // 64)
    assert stats.packing_efficiency == round(len(expected) / (stats.blocks * 64), 4)


def test_block_size_capped_at_context(bundled_tokenizer):
    _, stats = pack_blocks(["hello world " * 50], bundled_tokenizer, BlocksConfig(block_size=4096), max_context=32)
    assert stats.block_size == 32


def test_chat_and_both_formats(bundled_tokenizer):
    text, title = "P5 instances are powered by NVIDIA H100 GPUs.", "Amazon EC2 P5"
    _, raw = pack_blocks([text], bundled_tokenizer, BlocksConfig(block_size=512), titles=[title])
    chat_ds, chat = pack_blocks([text], bundled_tokenizer, BlocksConfig(text_format="chat"), titles=[title])
    _, both = pack_blocks([text], bundled_tokenizer, BlocksConfig(text_format="both"), titles=[title])
    decoded = bundled_tokenizer.decode(chat_ds[0]["input_ids"])
    assert "What do you know about Amazon EC2 P5?" in decoded and text in decoded
    assert decoded.rstrip().endswith("<|im_end|>") and "assistant" in decoded
    assert both.corpus_tokens == raw.corpus_tokens + chat.corpus_tokens
    assert both.documents == 2


def test_chat_format_needs_a_chat_template(bundled_tokenizer):
    import copy

    plain = copy.deepcopy(bundled_tokenizer)
    plain.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        pack_blocks(["text"], plain, BlocksConfig(block_size=64, text_format="chat"))


def _packed(progress: RecordingProgress) -> bool:
    return any(name == "start" and info[0] == "pack blocks" for name, info in progress.events)


def test_blocks_are_cached_by_what_they_depend_on(tiny_run, bundled_tokenizer):
    run = RunDir(tiny_run)
    progress = RecordingProgress()
    _, stats, packed = ensure_blocks(run, BlocksConfig(block_size=64), bundled_tokenizer, 256, progress)
    assert not packed and not _packed(progress)  # prepare packed these already
    assert stats.block_size == 64
    _, stats, packed = ensure_blocks(run, BlocksConfig(block_size=32), bundled_tokenizer, 256, progress)
    assert packed and _packed(progress) and stats.block_size == 32
    _, _, packed = ensure_blocks(run, BlocksConfig(block_size=32), bundled_tokenizer, 256)
    assert not packed  # packed once, then reused
    _, _, packed = ensure_blocks(run, BlocksConfig(block_size=32, text_format="chat"), bundled_tokenizer, 256)
    assert packed  # another text format is another packing
    assert len(run.blocks_infos()) == 3


def test_a_model_without_a_boolean_mask_or_with_a_short_window_keeps_every_header(tiny_run, bundled_tokenizer):
    """The shared header needs attention that reads a boolean mask (sdpa; eager adds it to its scores) and no
    sliding window shorter than the block (the mask holds none); otherwise blocks are packed as they were."""
    from transformers import Gemma3Config, LlamaConfig, MistralConfig

    from kinject.corpus.prefix import shares_header

    def config(cls, implementation: str, **fields):
        made = cls(**fields)
        made._attn_implementation = implementation
        return made

    assert shares_header(config(LlamaConfig, "sdpa"), 512)
    assert not shares_header(config(LlamaConfig, "eager"), 512)
    assert not shares_header(config(MistralConfig, "sdpa", sliding_window=256), 512)
    assert shares_header(config(MistralConfig, "sdpa", sliding_window=4096), 512)
    assert not shares_header(config(Gemma3Config, "sdpa", text_config={"sliding_window": 256}), 512)  # nested
    run = RunDir(tiny_run)
    blocks = BlocksConfig(block_size=256, text_format="chat")
    shared, _, _ = ensure_blocks(run, blocks, bundled_tokenizer, 256)
    whole, _, packed = ensure_blocks(run, blocks, bundled_tokenizer, 256, share=False)
    assert packed and "shared" in shared.column_names and "shared" not in whole.column_names


def test_a_chat_page_trained_on_every_token_keeps_its_header():
    """A header that is a target (a page as one chat exchange trains on all of it) is not shared: dropping it
    would drop targets."""
    from kinject.corpus.blocks import Doc, pack_docs

    question = Doc([1, 2, 7, 8], labels=[-100, -100, -100, 8])  # a chat_example row: its prompt is no target
    (block,), _ = pack_docs([Doc([1, 2, 3, 4]), Doc([1, 2, 5, 6]), question], 16, 0, prefix=[1, 2])
    assert block["input_ids"] == [1, 2, 3, 4, 1, 2, 5, 6, 7, 8] and block["shared"] == 2
    assert block["position_ids"] == [0, 1, 2, 3, 0, 1, 2, 3, 2, 3] and block["segment_ids"][4:8] == [-2] * 4
    # the token after the header a target: the previous row's last token would be trained to predict it
    (block,), _ = pack_docs([Doc([1, 2, 3]), Doc([1, 2, 9, 9], labels=[-100, -100, 9, 9])], 16, 0, prefix=[1, 2])
    assert block["input_ids"] == [1, 2, 3, 1, 2, 9, 9]


def test_block_size_is_capped_before_the_cache_key(tiny_run, bundled_tokenizer):
    run = RunDir(tiny_run)
    _, stats, packed = ensure_blocks(run, BlocksConfig(block_size=4096), bundled_tokenizer, 64)
    assert not packed and stats.block_size == 64  # 4096 capped at a 64-token context is the prepared packing


def test_a_changed_tokenizer_packs_again(tiny_run, bundled_tokenizer):
    import copy

    other = copy.deepcopy(bundled_tokenizer)
    other.chat_template = "{{ messages[0]['content'] }}"
    _, _, packed = ensure_blocks(RunDir(tiny_run), BlocksConfig(block_size=64), other, 256)
    assert packed


def test_prepare_default_block_size_is_the_default_presets():
    from kinject.settings.presets import DEFAULT_PRESET, PRESETS

    assert BlocksConfig().block_size == PRESETS[DEFAULT_PRESET]["blocks"]["block_size"]


def test_the_chat_format_asks_about_a_short_subject_not_a_headline(bundled_tokenizer):
    text, title = (
        "P5 instances are powered by NVIDIA H100 GPUs.",
        "Amazon EC2 P5 instances are now generally available",
    )
    ds, _ = pack_blocks([text], bundled_tokenizer, BlocksConfig(text_format="chat"), titles=[title])
    decoded = bundled_tokenizer.decode(ds[0]["input_ids"])
    assert "What do you know about Amazon EC2 P5?" in decoded and "generally available?" not in decoded


def test_a_teachers_turn_ends_in_the_same_answer_tokens(bundled_tokenizer):
    from kinject.corpus.blocks import IGNORE_INDEX, qa_docs

    text = "The Lumora Grand carries 410 passengers and 60 cars. The Lumora Swift carries 180 passengers."
    documents = [{"text": text, "source": "ferry.md", "title": "Lumora"}]
    row = {
        "passage": "d1p1",
        "question": "How many passengers does the Lumora Grand carry?",
        "answer": "The Lumora Grand carries 410 passengers and 60 cars.",
    }
    config = BlocksConfig(text_format="none", use_qa=True, packing="rows", qa_target="teacher")
    (doc,) = qa_docs([row], documents, config, bundled_tokenizer)
    answer = [t for t, label in zip(doc.ids, doc.labels, strict=True) if label != IGNORE_INDEX]
    assert doc.teacher[-len(answer) :] == answer and len(doc.teacher) > len(doc.ids) and not doc.hard
    assert text in bundled_tokenizer.decode(doc.teacher)
    (plain,) = qa_docs([row], documents, BlocksConfig(text_format="none", use_qa=True), bundled_tokenizer)
    assert plain.teacher is None and plain.hard


def test_rows_packing_gives_each_example_a_row_and_keeps_its_teacher():
    from kinject.corpus.blocks import Doc, pack_docs

    docs = [Doc([1, 2, 3]), Doc([4, 5], teacher=[9, 4, 5], hard=False), Doc(list(range(10, 16)))]
    blocks, total = pack_docs(docs, 4, 0, per_row=True)
    assert [b["input_ids"] for b in blocks] == [[1, 2, 3], [4, 5], [10, 11, 12, 13], [14, 15]]  # a long one split
    assert total == 11 and [b["teacher_ids"] for b in blocks][:2] == [[], [9, 4, 5]] and blocks[1]["hard"] == 0
    packed, _ = pack_docs(docs, 8, 0)
    assert [b["input_ids"] for b in packed][0] == [1, 2, 3, 4, 5, 10, 11, 12] and "teacher_ids" not in packed[0]


def test_balanced_facts_are_each_asked_as_often_as_the_most_asked():
    from kinject.corpus.mix import balanced

    rows = [{"passage": "p", "fact": "410", "question": f"q{i}"} for i in range(4)]
    rows += [{"passage": "p", "fact": "60", "question": "cars?"}, {"passage": "p", "fact": "", "question": "t"}]
    out = balanced(rows)
    assert [r["question"] for r in out if r["fact"] == "60"] == ["cars?"] * 4
    assert len([r for r in out if r["fact"] == "410"]) == 4 and len([r for r in out if not r["fact"]]) == 1


def test_the_chat_header_kept_once_a_block_trains_as_every_copy_does(tiny_model_dir, bundled_tokenizer):
    """A block that keeps the template's header once (each later row attending to it) gives the same loss and LoRA
    gradients as the same rows each with its own header, on fewer tokens; replay's KL term included."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kinject.corpus.blocks import Doc, chat_example, pack_docs
    from kinject.corpus.prefix import template_prefix
    from kinject.training.loop import collate
    from kinject.training.losses import causal_lm_loss

    prefix = template_prefix(bundled_tokenizer)
    assert bundled_tokenizer.decode(prefix).startswith("<|im_start|>system") and len(prefix) > 10
    turns = [("Who runs the Lumora line?", "Calvane Transit."), ("How long is the crossing?", "35 minutes.")]
    docs = [Doc(*chat_example(q, a, bundled_tokenizer), whole=True) for q, a in turns]
    docs.append(Doc(*chat_example("Name a colour.", "Blue is a colour.", bundled_tokenizer), replay=True, whole=True))
    docs.append(Doc([5, 6, 7]))  # raw text without the header: kept as it is
    every, total = pack_docs(docs, 512, 0)
    once, _ = pack_docs(docs, 512, 0, prefix=prefix)
    assert len(every) == len(once) == 1 and once[0]["shared"] == len(prefix)
    assert len(once[0]["input_ids"]) == total - 2 * len(prefix) and once[0]["input_ids"][-3:] == [5, 6, 7]
    assert once[0]["segment_ids"][:3] == [0, 0, 0] and once[0]["segment_ids"][-1] == -4  # sees no header

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
    model.config.use_cache = False

    def run(block: dict, rows: int = 1) -> tuple[float, list]:
        model.zero_grad()
        batch = collate([block] * rows, 0, with_replay=True)
        assert ("attention_mask" in batch) == ("shared" in block)
        loss = causal_lm_loss(model, batch, 2.0, None)
        loss.backward()
        return loss.item(), [p.grad.clone() for n, p in model.named_parameters() if "lora_" in n]

    loss_every, grads_every = run(every[0])
    loss_once, grads_once = run(once[0])
    assert loss_once == pytest.approx(loss_every, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_every, grads_once, strict=True))
    # one block a step runs only its replay documents through the base; two rows run the whole blocks
    for block, loss, grads in ((every[0], loss_every, grads_every), (once[0], loss_once, grads_once)):
        loss_two, grads_two = run(block, rows=2)
        assert loss_two == pytest.approx(loss, rel=1e-5)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, grads_two, strict=True))


def test_a_block_that_does_not_open_with_the_header_shares_nothing():
    from kinject.corpus.blocks import Doc, pack_docs

    blocks, _ = pack_docs([Doc([5, 6, 7]), Doc([1, 2, 9, 9]), Doc([1, 2])], 16, 0, prefix=[1, 2], pad_last=True)
    (block,) = blocks
    assert block["input_ids"][:9] == [5, 6, 7, 1, 2, 9, 9, 1, 2] and block["shared"] == 0
    assert block["segment_ids"] == [0, 0, 0, -2, -2, -2, -2, -3, -3] + [-1] * 7 and len(block["position_ids"]) == 16
    row = Doc([1, 2, 9, 9], labels=[-100, -100, -100, 9])
    shared, _ = pack_docs([Doc([1, 2, 3]), row, Doc([1, 2])], 16, 0, prefix=[1, 2])
    # a row that is the header alone stays whole: nothing of it would be left to train
    assert shared[0]["input_ids"] == [1, 2, 3, 9, 9, 1, 2] and shared[0]["position_ids"] == [0, 1, 2, 2, 3, 0, 1]
