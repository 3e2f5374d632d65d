"""The header a chat template opens every turn with, computed once a block.

Many chat templates open every conversation with the same tokens: SmolLM2's adds a default system turn ("You are a
helpful AI assistant named SmolLM, trained by Hugging Face"), Llama 3's a knowledge date, Qwen's its own system
turn. Packed question-answer rows each carry that header, and each computes it again: on the bundled model it is 24
of a row's 80-odd tokens. Packed documents do not attend to each other, so every copy of the header in a block has
the same hidden states as the first; a block keeps the first copy only, and each later row attends to it in place
of its own. Training on such a block is the same computation as on the block with every copy (the same docs per
block, the same positions, the same loss), on fewer tokens.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100  # a label that is no target


def shares_header(config: Any, block_size: int) -> bool:
    """Whether a model trains on blocks that keep the chat header once: its attention takes a boolean mask as one
    (sdpa; eager adds a mask to its scores) and has no sliding window shorter than the block (the mask holds none)."""
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config  # Gemma 3's is nested
    window = getattr(text, "sliding_window", None)
    return not (isinstance(window, int) and 0 < window < block_size)


def template_prefix(tokenizer: Any) -> list[int]:
    """The tokens every chat turn opens with under ``tokenizer``'s template, up to the user's words: the longest
    common start of two rendered prompts; [] without a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    from ..models.generate import chat_prompt_ids

    one = chat_prompt_ids(tokenizer, [{"role": "user", "content": "one"}])
    two = chat_prompt_ids(tokenizer, [{"role": "user", "content": "Two words"}])
    size = 0
    while size < min(len(one), len(two)) and one[size] == two[size]:
        size += 1
    return list(one[:size])


def share_prefix(block: dict[str, list[int]], prefix: list[int]) -> None:
    """Drop ``prefix`` from every document of ``block`` after its first, when the block opens with it; the
    positions of what is left go on from the prefix's length. Sets ``segment_ids`` (the document each token belongs
    to: negative for one that kept its own start) and ``shared`` (the prefix's length where the block shares it,
    else 0), which ``attention_mask`` reads."""
    ids, positions = block["input_ids"], block["position_ids"]
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
    size = len(prefix)
    shares = size > 0 and ids[:size] == prefix and starts[1] > size
    columns = ("input_ids", "labels", "position_ids", "replay_mask")
    kept: dict[str, list[int]] = {c: [] for c in columns}
    segments: list[int] = []
    labels = block["labels"]
    for n, (start, end) in enumerate(zip(starts, starts[1:], strict=False)):
        # only a header that is no target, nor the token after it (a chat page trains on every token)
        cut = (
            size
            if shares
            and n > 0
            and end - start > size
            and ids[start : start + size] == prefix
            and all(label == IGNORE_INDEX for label in labels[start : start + size + 1])
            else 0
        )
        for column in columns:
            kept[column] += block[column][start + cut : end]
        # a later document that keeps its own start (raw text, or a row the header alone) does not see the header
        segments += [n if cut or n == 0 else -n - 1] * (end - start - cut)
    block.update(kept)
    block["segment_ids"] = segments
    block["shared"] = size if shares else 0


def attention_mask(segment_ids: Any, shared: Any) -> Any:
    """The boolean mask (batch, 1, length, length) of packed blocks: a token sees the tokens before it of its own
    document and, when its document's header was dropped (a segment id of 0 or more), its block's shared prefix
    (``shared`` tokens a row, 0 for none). Padding has a segment id of its own below the others'."""
    import torch

    length = segment_ids.shape[1]
    place = torch.arange(length, device=segment_ids.device)
    causal = place[None, :] <= place[:, None]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    prefix = (place[None, None, :] < shared[:, None, None]) & (segment_ids[:, :, None] >= 0)
    return (causal[None] & (same | prefix))[:, None]
