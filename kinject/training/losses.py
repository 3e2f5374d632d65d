"""Training losses computed from the final hidden states, never from the full vocabulary's logits.

A causal LM's loss is usually taken from logits of shape (batch, tokens, vocabulary): for the bundled model's
49,152-token vocabulary and two blocks of 512 that is 200 MB in fp32, and log-softmax and its gradient hold as
much again. ``linear_cross_entropy`` (as Liger's fused linear cross-entropy does on GPUs, here in plain torch so it
also runs on a CPU) projects a chunk of tokens at a time and computes the gradient with respect to the hidden
states in the same pass, so only one chunk's logits exist at once. The result is the same cross-entropy. The output
projection is frozen under LoRA, so it needs no gradient; a trainable one falls back to the plain path.

``hidden_states`` captures the hidden states at the output projection's input through a forward pre-hook and hands
the projection an empty slice, so the model's own forward (and a DistributedDataParallel wrapper around it) runs
unchanged but computes no logits.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from ..corpus.blocks import IGNORE_INDEX

CHUNK_BYTES = 1 << 26  # fp32 logits of one chunk: 64 MiB
# config fields of models that scale or cap the logits after the output projection (Gemma 2, Cohere, Granite,
# Falcon-H1, ...): those train through their own logits
SCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier", "output_multiplier")


def _chunk_rows(vocab: int) -> int:
    return max(16, CHUNK_BYTES // (4 * vocab))


def linear_cross_entropy(hidden: Any, weight: Any, targets: Any) -> Any:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets`` (1-D), one chunk of rows at a time; the
    gradient flows to ``hidden`` only (``weight`` must be frozen)."""
    return _linear_ce_class().apply(hidden, weight, targets)


@functools.lru_cache(maxsize=1)
def _linear_ce_class() -> Any:
    """The autograd function, built on first use (torch is imported lazily everywhere in kinject)."""
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets):  # noqa: ANN001, ANN205 - torch's signature
            rows = _chunk_rows(weight.shape[0])
            total = hidden.new_zeros((), dtype=torch.float32)
            grad = torch.empty_like(hidden) if hidden.requires_grad else None
            for start in range(0, hidden.shape[0], rows):
                h, t = hidden[start : start + rows], targets[start : start + rows]
                logits = (h @ weight.T).float()
                lse = torch.logsumexp(logits, dim=-1)
                total = total + (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                if grad is not None:
                    probs = (logits - lse[:, None]).exp_()
                    probs[torch.arange(len(t), device=t.device), t] -= 1
                    grad[start : start + rows] = probs.to(weight.dtype) @ weight
            ctx.save_for_backward(grad if grad is not None else hidden.new_empty(0))
            return total

        @staticmethod
        def backward(ctx, upstream):  # noqa: ANN001, ANN205
            (grad,) = ctx.saved_tensors
            return grad * upstream.to(grad.dtype), None, None

    return LinearCrossEntropy


def output_head(model: Any) -> Any:
    """The frozen bias-free linear output projection of ``model`` (unwrapped from peft and DDP), or None when the
    fused path does not apply (a trainable head, a bias, logit scaling or soft-capping after the projection)."""
    import torch

    inner = getattr(model, "module", model)  # DistributedDataParallel
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    config = getattr(inner, "config", None)
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or head.weight.requires_grad:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(c, name, None) not in (None, 1, 1.0) for c in (config, text) for name in SCALED_LOGITS):
        return None
    return head


@contextlib.contextmanager
def hidden_states(head: Any):
    """Within the block, a forward of the model records the hidden states its ``head`` receives (``box[0]``) and
    the head computes logits for no token."""
    box: list[Any] = []

    def grab(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        box.append(args[0])
        return (args[0][:, :0],)

    handle = head.register_forward_pre_hook(grab)
    try:
        yield box
    finally:
        handle.remove()


def _forward(model: Any, inputs: dict[str, Any], head: Any) -> tuple[Any, Any]:
    """(hidden states, None) at ``head``'s input when the fused path applies, else (None, fp32 logits); both
    without the last position, which predicts nothing scored."""
    if head is None:
        return None, model(**inputs).logits[:, :-1].float()
    with hidden_states(head) as box:
        model(**inputs)
    return box[0][:, :-1], None


def _base_outputs(inner: Any, inputs: dict[str, Any], head: Any, replay: Any, soft: Any) -> Any:
    """The base model's fp32 logits at the ``soft`` places (replay answers' tokens). For one block a step (the
    default) with its documents' mask (``corpus.prefix``), only the block's replay documents go through the base,
    with the header they attend to: its outputs there depend on nothing else, and replay is under half of a block's
    tokens."""
    mask = inputs.get("attention_mask")
    if soft.shape[0] == 1 and mask is not None and mask.dim() == 4:
        keep = replay[0].bool()
        index = (keep | mask[0, 0][keep].any(0)).nonzero().squeeze(1)  # and the header each replay document sees
        inputs = {
            "input_ids": inputs["input_ids"][:, index],
            "position_ids": inputs["position_ids"][:, index],
            "attention_mask": mask[:, :, index][:, :, :, index],
        }
        soft = soft[:, index[:-1]]  # every soft place is a replay token before its document's last
    base_hidden, base_logits = _forward(inner, inputs, head)
    return head(base_hidden[soft]).float() if base_hidden is not None else base_logits[soft]


def causal_lm_loss(model: Any, inputs: dict[str, Any], kl_weight: float, count: Any) -> Any:
    """kinject's training loss of one batch: cross-entropy on the scored tokens, and ``kl_weight`` times
    KL(base || adapter) on replay answers' tokens (``replay_mask``; the base is the adapter switched off), divided
    by ``count`` (the batch's scored tokens, or the Trainer's count over accumulated micro-batches)."""
    import torch

    replay = inputs.pop("replay_mask", None)
    teacher = {k: inputs.pop(k) for k in ("teacher_ids", "teacher_lengths", "hard") if k in inputs}
    labels = inputs.pop("labels")
    head = output_head(model)
    hidden, logits = _forward(model, inputs, head)
    targets = labels[:, 1:]
    scored = targets != IGNORE_INDEX
    soft = scored & replay[:, 1:].bool() if replay is not None else torch.zeros_like(scored)
    hard = scored & ~soft
    if teacher:  # a turn whose teacher alone teaches it is no cross-entropy target
        hard = hard & ~((teacher["teacher_lengths"] > 0) & ~teacher["hard"])[:, None]
    if not hard.any():
        loss = (hidden if hidden is not None else logits).sum() * 0
    elif hidden is not None:
        loss = linear_cross_entropy(hidden[hard], head.weight, targets[hard])
    else:
        loss = torch.nn.functional.cross_entropy(logits[hard], targets[hard], reduction="sum")
    if soft.any():
        adapter_logp = torch.log_softmax(head(hidden[soft]).float() if hidden is not None else logits[soft], -1)
        inner = getattr(model, "module", model)  # not through DistributedDataParallel: no collectives here
        with torch.no_grad(), inner.disable_adapter():
            base_logp = torch.log_softmax(_base_outputs(inner, inputs, head, replay, soft), -1)
        loss = loss + kl_weight * (base_logp.exp() * (base_logp - adapter_logp)).sum()
    if teacher:
        loss = loss + _teacher_kl(model, head, hidden, logits, targets, scored, teacher)
    return loss / (count if count is not None else scored.sum())


def _teacher_kl(model: Any, head: Any, hidden: Any, logits: Any, targets: Any, scored: Any, teacher: dict) -> Any:
    """KL(teacher || adapter) over the answer tokens of each turn that has a teacher: the base model (the adapter
    off) reading the turn with its passage, whose last tokens are the same answer (context distillation)."""
    import torch

    rows = [i for i in range(targets.shape[0]) if teacher["teacher_lengths"][i] > 0]
    if not rows:
        return targets.new_zeros((), dtype=torch.float32)
    inner = getattr(model, "module", model)
    ids = teacher["teacher_ids"][rows]
    with torch.no_grad(), inner.disable_adapter():
        base_hidden, base_logits = _forward(inner, {"input_ids": ids}, head)
    total = targets.new_zeros((), dtype=torch.float32)
    for k, i in enumerate(rows):
        student = scored[i].nonzero().squeeze(1)
        length = int(teacher["teacher_lengths"][i])
        places = torch.arange(length - 1 - len(student), length - 1, device=ids.device)
        if len(student) == 0 or places[0] < 0 or not torch.equal(ids[k, places + 1], targets[i, student]):
            continue  # the answers' tokens do not line up: no teacher for this turn
        mine = head(hidden[i, student]).float() if hidden is not None else logits[i, student]
        theirs = head(base_hidden[k, places]).float() if base_hidden is not None else base_logits[k, places]
        base_logp, adapter_logp = torch.log_softmax(theirs, -1), torch.log_softmax(mine, -1)
        total = total + (base_logp.exp() * (base_logp - adapter_logp)).sum()
    return total
