"""Training on a tiny random Llama: it learns (LoRA moves, base does not), stops, resumes, fails cleanly."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from damaged_runs import fake_run
from model_fixtures import TINY_BLOCKS, StopAt

from kinject.cli.main import EXIT_ERROR, main
from kinject.runs import RunBusyError, RunDamagedError, RunDir, RunError, replaced_dir
from kinject.runtime.jobs import JobBusyError, JobManager, read_status
from kinject.runtime.progress import Progress, RecordingProgress
from kinject.settings.stages import BlocksConfig
from kinject.settings.training import TrainConfig
from kinject.training.job import submit_training
from kinject.training.pipeline import train

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 6


def quick(**kw) -> TrainConfig:
    base = dict(preset="cpu-demo", max_steps=6, learning_rate=5e-3, save_steps=2, quantization="none", guard_checks=0)
    return TrainConfig(**{**base, **kw})


def fit(run, config=None, progress=None, resume=False, callbacks=None, blocks=TINY_BLOCKS):
    """``train`` on the blocks ``tiny_run`` was packed with (the cpu-demo preset alone would ask for 512)."""
    return train(run, config or quick(), progress, resume=resume, callbacks=callbacks, blocks=blocks)


def meta(run) -> dict:
    return RunDir(run).read_adapter_meta()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_train_updates_lora_only(tiny_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = fit(tiny_run, quick())
    lora_b = {k: v for k, v in _weights(result.adapter_dir).items() if "lora_B" in k}
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero: it moved
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    peft = PeftModel.from_pretrained(base, str(result.adapter_dir))
    merged = peft.get_base_model().state_dict()
    for key, value in before.items():
        mkey = next(k for k in merged if k.replace(".base_layer", "") == key)
        assert torch.equal(merged[mkey], value), key  # the base weights are untouched


def test_train_logs_a_falling_loss_for_every_step(tiny_run):
    result = fit(tiny_run, quick())
    assert result.status == "done" and result.step == 6
    losses = [h["loss"] for h in RunDir(tiny_run).read_adapter_history() if "loss" in h]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert [r["step"] for r in RunDir(tiny_run).read_metrics()] == [1, 2, 3, 4, 5, 6]


def test_adapter_folder_records_what_was_trained(tiny_run):
    result = fit(tiny_run, quick())
    assert meta(tiny_run)["status"] == "done" and meta(tiny_run)["step"] == 6
    assert meta(tiny_run)["train"]["learning_rate"] == 5e-3
    assert (result.adapter_dir / "config.yaml").is_file() and (result.adapter_dir / "tokenizer.json").is_file()
    config = RunDir(tiny_run).read_config()
    assert config["train"]["max_steps"] == 6 and config["blocks"]["block_size"] == 64


def test_train_4bit_on_cpu(tiny_run):
    pytest.importorskip("bitsandbytes")
    progress = RecordingProgress()
    result = fit(tiny_run, quick(max_steps=1, quantization="4bit"), progress)
    assert result.status == "done" and result.step == 1
    assert any(name == "log" and "(4-bit base)" in text for name, text in progress.events)
    cfg = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA"


def test_stop_saves_adapter_and_a_checkpoint(tiny_run):
    # The stop request comes once step 3 is reported; training ends at the next step.
    result = fit(tiny_run, quick(max_steps=10, save_steps=100), StopAt(3))
    assert result.status == "stopped" and result.step == 4
    assert meta(tiny_run)["step"] == 4 and meta(tiny_run)["status"] == "stopped"
    assert _weights(result.adapter_dir)  # loadable weights
    assert RunDir(tiny_run).last_checkpoint().name == "checkpoint-4"  # a checkpoint was written at the stop


def test_resume_continues_after_the_checkpoint(tiny_run):
    fit(tiny_run, quick(max_steps=10, save_steps=100), StopAt(3))
    seen: list[int] = []

    class Record(Progress):
        def advance(self, n=1, **info):
            if "step" in info:
                seen.append(info["step"])

    resumed = fit(tiny_run, None, Record(), resume=True)
    assert resumed.status == "done" and resumed.step == 10
    assert seen[0] == 5 and seen[-1] == 10  # continued after step 4, did not restart
    assert [r["step"] for r in RunDir(tiny_run).read_metrics()] == list(range(1, 11))  # no step logged twice


def test_resume_uses_the_saved_configuration(tiny_run):
    fit(tiny_run, quick(max_steps=10, save_steps=100, learning_rate=4e-3), StopAt(3))
    resumed = fit(tiny_run, quick(max_steps=99, learning_rate=9e-1), resume=True, blocks=BlocksConfig(block_size=16))
    assert resumed.total_steps == 10 and meta(tiny_run)["train"]["learning_rate"] == 4e-3
    assert RunDir(tiny_run).section("blocks")["block_size"] == 64


def _stopped_job(tiny_run) -> tuple[JobManager, object]:
    jobs = JobManager()
    submit_training(jobs, tiny_run, quick(max_steps=3000, save_steps=1000), blocks=TINY_BLOCKS)
    deadline = time.time() + 120
    while jobs.state().step < 2 and time.time() < deadline and jobs.running():
        time.sleep(0.02)
    assert jobs.stop()
    return jobs, jobs.wait(120)


def test_job_manager_stops_and_saves(tiny_run):
    _, state = _stopped_job(tiny_run)
    assert state.status == "stopped", state
    assert 2 <= state.step < 3000
    assert meta(tiny_run)["status"] == "stopped"
    on_disk = read_status(RunDir(tiny_run))
    assert on_disk.status == "stopped" and on_disk.step == state.step
    assert len(RunDir(tiny_run).read_metrics()) >= 2


def test_job_manager_refuses_a_second_job(tiny_run):
    jobs = JobManager()
    submit_training(jobs, tiny_run, quick(max_steps=3000, save_steps=1000), blocks=TINY_BLOCKS)
    try:
        with pytest.raises(JobBusyError, match="already running"):
            submit_training(jobs, tiny_run, quick(), blocks=TINY_BLOCKS)
    finally:
        jobs.stop()
        jobs.wait(120)


def test_failed_job_reads_failed_and_the_next_one_runs(tiny_run, tmp_path):
    jobs = JobManager()
    broken = RunDir(tiny_run).copy_inputs(tmp_path / "broken")  # its corpus, and a model that is not there
    cfg = RunDir(tiny_run).read_config()
    cfg["model"]["model"] = str(tmp_path / "no-such-model")
    broken.write_config(cfg)
    submit_training(jobs, broken, quick())
    failed = jobs.wait(60)
    assert failed.status == "failed" and "does not exist" in failed.error
    assert read_status(RunDir(broken)).status == "failed"
    submit_training(jobs, tiny_run, quick(max_steps=2), blocks=TINY_BLOCKS)
    assert jobs.wait(120).status == "done"


def test_train_then_evaluate_runs_the_evaluation_once_training_is_done(tiny_run):
    from kinject.settings.stages import EvalConfig, GenerationConfig
    from kinject.training.pipeline import train_then_evaluate

    evaluation = EvalConfig(auto_probes=1, retention=False, forgetting=False)
    outcome = train_then_evaluate(
        tiny_run,
        quick(max_steps=2, eval_at_end=True),
        Progress(),
        blocks=TINY_BLOCKS,
        evaluation=evaluation,
        generation=GenerationConfig(max_new_tokens=2),
    )
    assert outcome.result.status == "done" and outcome.report is not None and not outcome.eval_error
    assert "evaluation written" in outcome.message
    assert RunDir(tiny_run).read_eval()["settings"]["adapter_step"] == 2


def test_interrupted_status_is_reported(tiny_run):
    import signal
    import subprocess
    import sys

    from kinject.runtime.jobs import process_started

    def status_with(**fields) -> str:
        RunDir(tiny_run).write_status({"run_dir": str(tiny_run), "status": "running", **fields})
        return read_status(RunDir(tiny_run)).status

    assert status_with(pid=2**22 + 7) == "interrupted"  # no such process
    assert status_with() == "interrupted"  # no writer recorded
    assert status_with(pid=2**80) == "interrupted"  # no process can have it
    with pytest.raises(RunDamagedError, match="pid must be a whole number"):
        status_with(pid="x")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = process_started(other.pid)
        assert status_with(pid=other.pid, pid_started=started) == "running"  # another live process trains it
        assert status_with(pid=other.pid) == "running"  # start time not recorded: the live pid is enough
        # The recorded pid is alive but started at another time: a reused pid, the writer is gone.
        assert status_with(pid=other.pid, pid_started=(started or 5000.0) + 3600) == "interrupted"
        os.kill(other.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while process_started(other.pid) != 0.0 and time.time() < deadline:
            time.sleep(0.05)
        assert status_with(pid=other.pid, pid_started=started) == "interrupted"  # dead but not reaped: a zombie
    finally:
        other.kill()
        other.wait()
    assert status_with(pid=other.pid, pid_started=started) == "interrupted"


def test_corrupt_run_folder_fails_clearly(tiny_run):
    from kinject.training.loop import TrainError

    (cached,) = (tiny_run / "blocks").glob("*/blocks.json")
    cached.write_text("{not json")
    with pytest.raises(TrainError, match="corrupt"):
        fit(tiny_run, quick())


def test_second_process_on_same_run_refused(tiny_run):
    import fcntl

    from kinject.runs import RunBusyError

    status_before = RunDir(tiny_run).has_status()
    with open(tiny_run / ".train.lock", "w") as fh:  # as another process's training would hold it
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunBusyError, match="another process"):
            fit(tiny_run, quick())
        jobs = JobManager()
        submit_training(jobs, tiny_run, quick(), blocks=TINY_BLOCKS)
        assert jobs.wait(60).status == "failed"
        assert RunDir(tiny_run).has_status() == status_before  # the refused job did not touch its status


def test_block_size_packs_the_corpus_again(tiny_run):
    (prepared,) = RunDir(tiny_run).blocks_infos()
    result = fit(tiny_run, quick(max_steps=None, epochs=1), blocks=BlocksConfig(block_size=32))
    tokens = prepared["stats"]["corpus_tokens"]
    assert result.total_steps == -(-tokens // 32)  # one step per 32-token block, not per prepared 64-token block
    sizes = sorted(info["stats"]["block_size"] for info in RunDir(tiny_run).blocks_infos())
    assert sizes == [32, 64]  # the prepared blocks stay, beside the new ones


def test_packed_documents_do_not_attend_to_each_other(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from kinject.corpus.blocks import pack_token_lists
    from kinject.training.loop import collate

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    doc1, doc2 = [5, 17, 99, 3, 42, 8], [61, 7, 7, 250, 11]
    blocks, _ = pack_token_lists([doc1, doc2], block_size=16, pad_id=0)
    batch = collate(blocks, pad_id=0)
    assert "attention_mask" not in batch
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        alone = model(input_ids=torch.tensor([doc2]), use_cache=False).logits
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits  # positions 0..n: one long sequence
    assert torch.allclose(packed[0, len(doc1) :], alone[0], atol=1e-5)
    assert not torch.allclose(leaky[0, len(doc1) :], alone[0], atol=1e-5)


def test_out_of_memory_names_the_step_and_the_fix(tiny_run, monkeypatch):
    import weakref

    from transformers import TrainerCallback

    from kinject.training import pipeline as train_module
    from kinject.training.loop import TrainError

    loaded = []
    real_load = train_module.load_model

    def load_and_watch(*args, **kwargs):
        model = real_load(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(train_module, "load_model", load_and_watch)

    class OutOfMemoryAtStep3(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(TrainError) as caught:
        fit(tiny_run, quick(), callbacks=[OutOfMemoryAtStep3()])
    message = str(caught.value)
    assert message.startswith("CUDA out of memory at step 3: lower the block size (--block-size) or the batch size")
    assert "--quantization 4bit" in message  # this run was not 4-bit yet
    # The error is still held (by ``caught``), yet the model is gone: its traceback must not keep GPU memory.
    assert len(loaded) == 1 and loaded[0]() is None
    assert fit(tiny_run, quick()).status == "done"  # the next training in the same process runs


def test_disk_full_while_saving_keeps_the_previous_adapter(tiny_run, monkeypatch):
    import errno

    from kinject.training.loop import TrainError

    assert fit(tiny_run, quick(max_steps=2)).status == "done"
    from kinject.runs import adapters as runs  # where write_adapter looks the writer up

    real_write = runs.atomic_write_json

    def full_disk(path, data):
        if Path(path).name == "training_metrics.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(runs, "atomic_write_json", full_disk)
    with pytest.raises(TrainError, match=r"^disk full during save adapter while writing .*: free space and resume"):
        fit(tiny_run, quick(max_steps=4))
    assert meta(tiny_run)["step"] == 2  # the earlier adapter is intact
    assert sorted(p.name for p in tiny_run.iterdir() if p.name.startswith(".adapter")) == []  # no half folder
    monkeypatch.setattr(runs, "atomic_write_json", real_write)
    resumed = fit(tiny_run, quick(max_steps=4), resume=True)  # what the message advises, once space is freed
    assert resumed.status == "done" and resumed.step == 4 and resumed.final_loss is not None
    assert meta(tiny_run)["step"] == 4  # not one step too many
    saved, trained = _weights(RunDir(tiny_run).adapter_dir), _weights(RunDir(tiny_run).last_checkpoint())
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)


@pytest.mark.parametrize(
    ("exc", "where", "four_bit", "phase", "expected"),
    [
        (
            RuntimeError("No space left on device (os error 28)"),
            " after step 10 (writing a checkpoint or log)",
            True,
            "train",
            "disk full after step 10 (writing a checkpoint or log) while writing the run folder: free space",
        ),
        (
            MemoryError(),
            " during load model",
            False,
            "load model",
            "out of memory during load model: the model does not fit: train in 4-bit (--quantization 4bit) or pick",
        ),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
            " during load model",
            True,
            "load model",
            "CUDA out of memory during load model: the model does not fit: pick a smaller model",
        ),
        (
            torch.OutOfMemoryError("CUDA out of memory."),
            " at step 12",
            True,
            "train",
            "CUDA out of memory at step 12: lower the block size (--block-size) or the batch size (--batch-size) (",
        ),
        (ValueError("bad"), "", False, "", "ValueError: bad"),
    ],
)
def test_failure_messages_say_where_and_what_to_do(exc, where, four_bit, phase, expected):
    from kinject.training.loop import explain_failure

    assert explain_failure(exc, where, four_bit, phase).startswith(expected)


def test_replaced_dir_keeps_the_old_folder_on_failure(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError), replaced_dir(target) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary folder left
    with replaced_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_gpu_check_script_runs_its_cpu_part(bundled_model_dir, tmp_path):
    """bench/cuda_check.py is the GPU host's check: keep it working (its masking check runs on any device)."""
    import subprocess
    import sys

    out = tmp_path / "results.json"
    script = Path(__file__).resolve().parent.parent / "bench" / "cuda_check.py"
    done = subprocess.run(
        [sys.executable, str(script), "--tokenizer", str(bundled_model_dir), "--out", str(out), "--only", "masking"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["masking"]["ok"] and results["masking"]["max_abs_diff"] < 1e-4
    assert set(results) == {"masking"}


def test_the_kl_weight_scales_only_the_replay_term(tiny_model_dir):
    """loss = (cross-entropy on the corpus's tokens + kl_weight * KL(base || adapter) on replay tokens) / tokens."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kinject.training.loop import kinject_trainer

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)  # B != 0: it drifts
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
    ids = torch.tensor([[11, 25, 39, 43, 57, 61, 75, 89]])
    labels = ids.clone()
    labels[0, :2] = -100

    def loss(weight: float) -> float:
        cls = kinject_trainer(True, weight)
        trainer = cls.__new__(cls)  # compute_loss reads only its arguments
        batch = {"input_ids": ids, "labels": labels.clone(), "replay_mask": torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])}
        with torch.no_grad():
            return trainer.compute_loss(model, batch).item()

    half, one, three = loss(0.5), loss(1.0), loss(3.0)
    assert one - half > 1e-6  # the replay term is there and positive
    assert three - one == pytest.approx(4 * (one - half), abs=2e-5)  # and linear in the weight


def test_the_chunked_linear_cross_entropy_is_cross_entropy_with_its_gradient(monkeypatch):
    """The loss from hidden states, a chunk of the vocabulary's logits at a time, gives the same value and
    gradient as cross-entropy on full logits, across chunk boundaries."""
    import torch

    import kinject.training.losses as losses

    monkeypatch.setattr(losses, "CHUNK_BYTES", 4 * 50 * 7)  # 7 rows a chunk: 3 chunks of 20 rows
    torch.manual_seed(0)
    hidden = torch.randn(20, 16, requires_grad=True)
    weight = torch.randn(50, 16)
    targets = torch.randint(0, 50, (20,))
    fused = losses.linear_cross_entropy(hidden, weight, targets)
    (fused * 2).backward()
    ours = hidden.grad.clone()
    hidden.grad = None
    plain = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (plain * 2).backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    assert torch.allclose(ours, hidden.grad, atol=1e-5)


@pytest.mark.parametrize("soft", [False, True])
def test_the_trainers_loss_from_hidden_states_matches_the_logits_path(tiny_model_dir, soft):
    """The fused path (no full logits) and the plain one (a trainable head forces it) give the same loss and LoRA
    gradients, with and without replay's KL term."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kinject.training.losses import causal_lm_loss, output_head

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
    ids = torch.tensor([[11, 25, 39, 43, 57, 61, 75, 89], [3, 5, 7, 9, 11, 13, 15, 17]])
    labels = ids.clone()
    labels[:, :2] = -100
    replay = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0] * 8])

    def run() -> tuple[float, list]:
        model.zero_grad()
        batch = {"input_ids": ids, "labels": labels.clone()}
        if soft:
            batch["replay_mask"] = replay
        loss = causal_lm_loss(model, batch, 2.0, None)
        loss.backward()
        grads = [p.grad.clone() for n, p in model.named_parameters() if "lora_" in n]
        return loss.item(), grads

    assert output_head(model) is not None
    fused, fused_grads = run()
    head = model.get_base_model().get_output_embeddings()
    head.weight.requires_grad_(True)  # a trainable head: the logits path
    assert output_head(model) is None
    plain, plain_grads = run()
    head.weight.requires_grad_(False)
    assert fused == pytest.approx(plain, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(fused_grads, plain_grads, strict=True))


def test_gradient_checkpointing_auto_follows_the_memory():
    from types import SimpleNamespace

    from kinject.training.speed import activation_bytes, use_checkpointing

    shape = SimpleNamespace(hidden_size=5120, num_hidden_layers=40)  # Llama-2-13b
    need = activation_bytes(shape, 2 * 2048)
    assert 30 * 2**30 < need < 60 * 2**30  # tens of GiB for two 2048-token blocks
    assert use_checkpointing("on", shape, 4096) and not use_checkpointing("off", shape, 4096)
    # auto: on only when the activations do not fit in the free memory (on a CPU they are fp32: twice the bytes)
    assert use_checkpointing("auto", shape, 4096, free_bytes=need // 2, cuda=True)
    assert not use_checkpointing("auto", shape, 4096, free_bytes=need * 2, cuda=True)
    assert use_checkpointing("auto", shape, None, free_bytes=need * 2, cuda=True)  # unknown size: the safe side
    assert use_checkpointing("auto", shape, 4096, free_bytes=need * 3 // 2, cuda=False)
    assert not use_checkpointing("auto", shape, 4096, free_bytes=need * 3, cuda=False)
    bundled = SimpleNamespace(hidden_size=576, num_hidden_layers=30)  # measured: 1.86 GB more RSS without it
    assert 1.5e9 < 2 * activation_bytes(bundled, 1024) < 2.2e9


def test_a_teachers_turn_teaches_the_answer_tokens_by_its_distribution(tiny_model_dir):
    """Context distillation: KL(base reading the passage || adapter) over the answer's tokens, zero when the adapter
    is the base and the teacher reads what the student reads; a turn without a teacher keeps its cross-entropy."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kinject.training.losses import causal_lm_loss

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4, lora_alpha=8))
    ids = torch.tensor([[11, 25, 39, 43, 57, 61]])
    labels = torch.tensor([[-100, -100, -100, 43, 57, 61]])  # the answer: the last three tokens
    same = {"teacher_ids": ids.clone(), "teacher_lengths": torch.tensor([6]), "hard": torch.tensor([False])}
    assert causal_lm_loss(model, {"input_ids": ids, "labels": labels, **same}, 1.0, None).item() == pytest.approx(0)
    passage = torch.tensor([[5, 6, 7, 8, 11, 25, 39, 43, 57, 61, 0, 0]])  # the passage first, padding after
    teacher = {"teacher_ids": passage, "teacher_lengths": torch.tensor([10]), "hard": torch.tensor([False])}
    loss = causal_lm_loss(model, {"input_ids": ids, "labels": labels.clone(), **teacher}, 1.0, None)
    loss.backward()
    assert loss.item() > 0 and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    both = {**teacher, "hard": torch.tensor([True])}
    with torch.no_grad():
        plain = causal_lm_loss(model, {"input_ids": ids, "labels": labels.clone()}, 1.0, None)
        mixed = causal_lm_loss(model, {"input_ids": ids, "labels": labels.clone(), **both}, 1.0, None)
    assert mixed.item() == pytest.approx(plain.item() + loss.item(), rel=1e-4)


def test_resume_while_the_first_training_is_starting_says_so(tmp_path):
    from kinject.training.pipeline import train

    run = fake_run(tmp_path / "run")
    with run.training_lock(), pytest.raises(RunBusyError, match=r"being trained .*still be starting"):
        train(run, resume=True)


def test_an_empty_config_yaml_is_called_empty_not_never_trained(tmp_path):
    from kinject.training.pipeline import train

    run = fake_run(tmp_path / "run")
    state = run.checkpoint_at(2) / "trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    run.config_path.write_text("")
    with pytest.raises(RunError, match=r"config\.yaml is empty or damaged"):
        train(run, resume=True)


def _snapshot(run: RunDir) -> tuple[list[str], list[dict], dict]:
    files = sorted(str(p.relative_to(run.checkpoints_dir)) for p in run.checkpoints_dir.rglob("*"))
    return files, run.read_metrics(), run.section("train")


def test_a_failing_train_leaves_checkpoints_intact(tiny_run, capsys):
    from model_fixtures import TINY_BLOCKS

    from kinject.settings.training import TrainConfig
    from kinject.training.pipeline import train

    run = RunDir(tiny_run)
    quick = TrainConfig(preset="cpu-demo", max_steps=4, save_steps=2, quantization="none", learning_rate=5e-3)
    train(run, quick, blocks=TINY_BLOCKS)
    before = _snapshot(run)
    assert before[0] and len(before[1]) == 4
    (cached,) = (run.path / "blocks").glob("*/blocks.json")
    cached.write_text("{not json")  # the blocks this training needs are damaged: it fails before it trains
    argv = ["train", str(run.path), "--preset", "cpu-demo", "--block-size", "64", "--lr", "0.01"]
    assert main([*argv, "--quantization", "none", "--max-steps", "8"]) == EXIT_ERROR
    assert "corrupt" in capsys.readouterr().err
    assert _snapshot(run) == before  # checkpoints, metrics and the saved settings: what --resume needs
    status = run.read_status()
    assert status["status"] == "failed" and status["phase"] == "prepare training"
    cached.unlink()  # packed again from the corpus
    result = train(run, quick, resume=True)
    assert result.status == "done" and result.step == 4


def test_a_training_that_fails_at_its_first_step_puts_the_earlier_checkpoints_back(tiny_run):
    from model_fixtures import TINY_BLOCKS
    from transformers import TrainerCallback

    from kinject.settings.training import TrainConfig
    from kinject.training.loop import TrainError
    from kinject.training.pipeline import train

    class FailAtFirstStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise RuntimeError("out of memory (simulated)")

    run = RunDir(tiny_run)
    quick = TrainConfig(preset="cpu-demo", max_steps=4, save_steps=2, quantization="none", learning_rate=5e-3)
    train(run, quick, blocks=TINY_BLOCKS)
    before = _snapshot(run)
    other = TrainConfig(preset="cpu-demo", max_steps=8, save_steps=2, quantization="none", learning_rate=1e-2)
    with pytest.raises(TrainError, match="simulated"):
        train(run, other, blocks=TINY_BLOCKS, callbacks=[FailAtFirstStep()])
    assert _snapshot(run) == before  # checkpoints, metrics and settings of the earlier training, as --resume needs
    assert not (run.path / ".previous").exists()
    assert train(run, quick, resume=True).status == "done"


def test_train_without_a_corpus_fails_before_loading_the_model(tmp_path, monkeypatch):
    import kinject.training.pipeline
    from kinject.training.loop import TrainError
    from kinject.training.pipeline import train

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"model": {"model": str(tmp_path / "no-model")}})
    monkeypatch.setattr(kinject.training.pipeline, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(TrainError, match="has no corpus to train on: prepare it first") as info:
        train(run)
    assert info.value.phase == "check run"
