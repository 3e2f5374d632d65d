"""How training runs fast on the machine it has: gradient checkpointing only when the activations would not fit,
and bf16 autocast on CPUs with bf16 matrix units (with LoRA's sums kept in fp32). Each choice was measured against
the case study's recipe (``bench/train_throughput.py``) with the loss curve still matching.
"""

from __future__ import annotations

from typing import Any

from . import processes

ACTIVATION_BYTES_PER_TOKEN_AND_WIDTH = 34  # stored activations a layer keeps per token and hidden unit, 16-bit
# (Korthikanti et al. 2022, without the attention matrix: SDPA and flash attention never store it), and a margin
# for LoRA's inputs, the optimizer's states and the allocator's fragmentation
ACTIVATION_MARGIN = 1.5


def activation_bytes(model_config: Any, block_tokens: int) -> int:
    """Activations a training step stores without gradient checkpointing, for ``block_tokens`` per micro-batch."""
    width = getattr(model_config, "hidden_size", 0) or 0
    layers = getattr(model_config, "num_hidden_layers", 0) or 0
    return int(ACTIVATION_BYTES_PER_TOKEN_AND_WIDTH * block_tokens * width * layers * ACTIVATION_MARGIN)


def use_checkpointing(
    switch: str, model_config: Any, block_tokens: int | None, free_bytes: int | None = None, cuda: bool | None = None
) -> bool:
    """Gradient checkpointing: ``on``/``off`` as told; ``auto``: off when the step's activations fit in the free
    memory (``free_bytes``, default: the GPU's free memory, or the machine's available RAM on a CPU, where they are
    fp32 and count twice), since recomputing every layer's forward costs a third of the step; on otherwise."""
    import torch

    if switch != "auto":
        return switch == "on"
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if block_tokens is None:
        return cuda
    if free_bytes is None:
        if cuda:
            free_bytes, _total = torch.cuda.mem_get_info()
        else:
            import psutil

            # the processes of a training on several CPU processes share the machine's RAM
            free_bytes = psutil.virtual_memory().available // processes.local_processes()
    return activation_bytes(model_config, block_tokens) * (1 if cuda else 2) > free_bytes


def lora_sums_in_fp32(model: Any) -> None:
    """Under bf16 autocast, make every LoRA layer add its delta to the frozen layer's output in fp32: the frozen
    output comes back as fp32, so the sum is fp32. In bf16 (8 bits of mantissa) the first steps' small deltas are
    rounded away in the forward pass, and the loss curve lagged fp32's by 0.05-0.07 nats for tens of steps."""
    import torch

    def upcast(module: Any, args: Any, output: Any) -> Any:
        return output.float() if output.dtype == torch.bfloat16 else output

    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if base is not None and hasattr(module, "lora_A"):
            base.register_forward_hook(upcast)


def cpu_bf16(switch: str) -> bool:
    """Whether training on this CPU autocasts to bf16: ``on``/``off`` as told, ``auto`` where the CPU has AMX tiles
    (bf16 matrix units; elsewhere bf16 matmuls are emulated and slower than fp32)."""
    import torch

    if switch != "auto":
        return switch == "on"
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    probe = probe or getattr(torch._C._cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())
