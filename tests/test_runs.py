"""RunDir owns the run folder: no other module spells its file names, and its writes are atomic."""

from __future__ import annotations

import ast
import errno
import json
import re
from pathlib import Path

import pytest
from damaged_runs import DAMAGES, Damage, fake_run, make_run

from kinject.cli.main import EXIT_ERROR, main
from kinject.runs import RunDir, RunError

REPO = Path(__file__).resolve().parent.parent
RUN_FILE_NAMES = {
    v
    for part in RunDir.__mro__
    for k, v in vars(part).items()
    if k.startswith("_") and k[1:].isupper() and isinstance(v, str)
}
NAMES_MODULE = REPO / "kinject" / "runs" / "paths.py"  # where the names are spelled, once
# An expression that stands for a run folder: run, run_dir, sub, recorder.run.path, RunDir(x).path, args.run_dir ...
RUN_EXPRESSION = re.compile(r"(?:^|[.(])(?:run|run_dir|run_path|sub)\)?(?:\.path)?$")


def _sources() -> list[Path]:
    return [p for p in (REPO / "kinject").rglob("*.py") if p != NAMES_MODULE] + [REPO / "app.py"]


def _joined_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Every name a file joins onto a run folder, by line, whether RunDir declares it or not: ``run.path / "x"``,
    ``run.path / "x" / name`` and ``f"{run_dir}/x/"`` all give ``x``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and isinstance(right.value, str) and _is_run(node.left):
                found.append((node.lineno, right.value.strip("/").split("/")[0]))
        elif isinstance(node, ast.JoinedStr):
            for before, after in zip(node.values, node.values[1:], strict=False):
                text = after.value if isinstance(after, ast.Constant) else None
                if isinstance(before, ast.FormattedValue) and isinstance(text, str) and text.startswith("/"):
                    name = re.split(r"[/\s]", text[1:], maxsplit=1)[0]
                    if name and _is_run(before.value):
                        found.append((node.lineno, name))
    return sorted(found)


def _is_run(node: ast.AST) -> bool:
    return RUN_EXPRESSION.search(ast.unparse(node)) is not None


def test_the_run_folder_names_are_known():
    assert {"config.yaml", "status.json", "metrics.jsonl", "adapter", "eval.json", "kinject.json"} <= RUN_FILE_NAMES


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_other_module_spells_a_run_folder_name(path):
    """A file name of the run folder (``eval.json``) anywhere, a folder name (``adapter``) in a path, and any name
    a module joins onto a run folder (``run.path / "x.log"``, ``f"{run_dir}/x/"``), declared by RunDir or not: all
    belong to RunDir. (Config sections share some folder names, "blocks" say, and are allowed as plain words.)"""
    files = {n for n in RUN_FILE_NAMES if "." in n}
    folders = RUN_FILE_NAMES - files
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_paths = {
        id(operand)
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
        for operand in (node.left, node.right)
    }
    found = [f"line {line}: {name!r} joined onto a run folder" for line, name in _joined_names(tree)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            as_path = id(node) in in_paths or any(value.startswith(f"{f}/") for f in folders)
            if value in files or (as_path and value.strip("/").split("/")[0] in folders):
                found.append(f"line {node.lineno}: {value!r}")
    assert not found, f"{path.name} spells run-folder names (ask RunDir instead): {found}"


def test_the_scan_finds_names_joined_onto_a_run_folder():
    """What the test above reads as a name of a run folder: names RunDir does not declare too."""
    code = (
        'log = recorder.run.path / "train-processes.log"\n'
        'sub = RunDir(run.path / "ablation" / f"{variant}-seed{seed}")\n'
        'print(f"the variants are under {args.run_dir}/ablation/")\n'
        'other = self.log_dir / "tgi.log"\n'
        'folder = RunDir(run_dir).path / "notes.txt"\n'
    )
    expected = [(1, "train-processes.log"), (2, "ablation"), (3, "ablation"), (5, "notes.txt")]
    assert _joined_names(ast.parse(code)) == expected


def test_require_names_what_to_do(tmp_path):
    with pytest.raises(RunError, match="not a run folder.*kinject prepare"):
        RunDir(tmp_path).require()


def test_require_adapter_fails_before_any_model_is_loaded(tmp_path):
    run = RunDir(tmp_path)
    run.write_config({"model": {"model": "no/such-model"}})
    with pytest.raises(RunError, match="no trained adapter yet: train it first"):
        run.require_adapter()


def test_update_config_keeps_the_other_sections(tmp_path):
    run = RunDir(tmp_path)
    run.write_config({"model": {"model": "m"}, "blocks": {"block_size": 64}})
    run.update_config(train={"seed": 1})
    assert run.read_config() == {"model": {"model": "m"}, "blocks": {"block_size": 64}, "train": {"seed": 1}}


def test_a_malformed_config_is_a_clear_error(tmp_path):
    run = RunDir(tmp_path)
    run.config_path.write_text("model: [unclosed\n")
    with pytest.raises(RunError, match="not valid YAML"):
        run.read_config()
    run.config_path.write_text("- a list\n")
    with pytest.raises(RunError, match="mapping of stage sections"):
        run.read_config()


def test_metrics_skip_a_cut_line_and_trim_after_a_step(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        run.append_metric({"step": step, "loss": 1.0 / step})
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "lo')  # a write cut off by a crash
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    run.trim_metrics(2)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    run.clear_metrics()
    assert run.read_metrics() == []


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_each_reader_names_the_damaged_file_and_field(tmp_path, damage: Damage):
    """A file that parses but holds the wrong shape or type, or is cut off, is one clear error where it is read:
    it names the file and the field (and is a ValueError, as a damaged JSON file always was to its callers)."""
    run = make_run(tmp_path, "bad")
    damage.apply(run)
    readers = {
        "status.json": run.read_status,
        "eval.json": run.read_eval,
        "config.yaml": run.read_config,
        "metrics.jsonl": run.read_metrics,
    }
    with pytest.raises(RunError) as info:
        readers[damage.file]()
    assert str(run.path / damage.file) in str(info.value) and damage.named in str(info.value)
    assert isinstance(info.value, ValueError)


def test_the_adapter_meta_and_the_sources_name_their_damaged_field(tmp_path):
    run = make_run(tmp_path, "bad")
    (run.adapter_dir / "kinject.json").write_text('{"status": "done", "step": "three"}')
    with pytest.raises(RunError, match=r"kinject\.json is damaged: step must be a whole number, got 'three'"):
        run.read_adapter_meta()
    (run.path / "sources.jsonl").write_text('{"input": "a.html", "tokens": 9}\n{"input": "b.html", "tokens": "9"}\n')
    with pytest.raises(RunError, match=r"sources\.jsonl is damaged: line 2: tokens must be a whole number, got .9."):
        run.read_sources()


def test_the_status_file_shape_follows_the_job_state():
    """status.json is checked against JobState's own fields and types, so the two cannot drift apart."""
    import typing

    from kinject.runs.shapes import INT, NUMBER, STATUS, TEXT, Opt
    from kinject.runtime.jobs import JobState

    spec_of = {str: TEXT, int: INT, float: NUMBER, float | None: Opt(NUMBER)}
    assert {name: spec_of[hint] for name, hint in typing.get_type_hints(JobState).items()} == STATUS


def test_what_kinject_writes_reads_back_whole(tmp_path):
    """The readers' checks accept every file as kinject writes it: an evaluation with both sides, forgetting,
    contamination and answers, an adapter's metadata with the guard's checks, a job's state and a logged step."""
    from kinject.eval.contamination import Contamination
    from kinject.eval.metrics import Answer, Forgetting, ProbeResult, Scores
    from kinject.eval.probes import Probe
    from kinject.eval.report import EvalReport
    from kinject.runtime.jobs import JobState
    from kinject.training.guard import Check, Decision

    run = make_run(tmp_path, "good")
    scores = Scores(0.5, 1.0, -1.2, None, 0.9, 1, 2, 3, 3, 4, 3)
    answer = Answer("H100 GPUs.", True, True, -0.4)
    probe = ProbeResult(Probe("k1", "knowledge", "Which GPUs?", answers=["H100"]), "chat", answer, answer)
    forgetting = Forgetting(0.1, 1.05, 0.5, {"g1": 0.1}, 64, 10.0, 10.5, 128)
    settings = {"generation": {"max_new_tokens": 32}, "quick": True, "counts": {"knowledge": 1}, "adapter_step": 4}
    settings["guard"] = {"learnt": True, "reason": "kept step 4"}
    report = EvalReport(
        str(run.path), "tiny", True, scores, scores, forgetting, [probe], settings, {"total_s": 3.5}, None,
        "2026-12-01T10:00:00", contamination=Contamination(1, 2, {"r1": ["p5"]}, 7), open_book=scores,
    )  # fmt: skip
    run.write_eval(report.to_dict(), "", lambda path: path.write_bytes(b""))
    assert run.read_eval() == json.loads(json.dumps(report.to_dict()))
    guard = Decision(4, "kept step 4", [Check(4, 0.05, -1.0, True)], learnt=True).to_dict()
    meta = {"status": "done", "step": 4, "total_steps": 4, "train": {}, "saved_at": "2026", "kept_step": 4}
    (run.adapter_dir / "kinject.json").write_text(json.dumps({**meta, "guard": guard}))
    assert run.read_adapter_meta()["guard"]["checks"][0]["kl"] == 0.05
    run.write_status(JobState(run_dir=str(run.path), status="done", loss=1.5, eta_s=None).to_dict())
    assert run.read_status()["status"] == "done"
    step = {"step": 2, "total": 4, "epoch": 0.5, "loss": 1.2, "learning_rate": 1e-4, "grad_norm": 0.3}
    run.append_metric({"time": 1.0, **step, "tokens_per_s": None, "eta_s": 3.0})
    assert run.read_metrics()[0]["step"] == 2


def test_a_failed_adapter_write_keeps_the_old_adapter(tmp_path):
    run = RunDir(tmp_path)
    run.write_config({"model": {"model": "m"}})

    def save(folder: Path) -> None:
        (folder / "adapter_config.json").write_text("{}")

    run.write_adapter(save, {"step": 1}, [])
    assert run.has_adapter() and run.read_adapter_meta() == {"step": 1}

    def broken(folder: Path) -> None:
        (folder / "adapter_config.json").write_text("{half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        run.write_adapter(broken, {"step": 2}, [])
    assert run.read_adapter_meta() == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".adapter")) == []


def test_create_refuses_an_existing_run_before_any_work(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("keep")
    with pytest.raises(RunError, match="already exists"):
        RunDir.check_new(tmp_path / "run")
    with pytest.raises(RunError, match="already exists"), RunDir.create(tmp_path / "run"):
        pass
    assert (tmp_path / "run" / "x").read_text() == "keep"


def test_force_replaces_only_a_kinject_run_or_an_empty_folder(tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("three years of work")
    with pytest.raises(RunError, match=r"thesis is not a kinject run.*nothing was deleted"):
        RunDir.check_new(thesis, force=True)
    with pytest.raises(RunError, match="not a kinject run"), RunDir.create(thesis, force=True) as new:
        new.write_config({"model": {"model": "m"}})
    assert (thesis / "thesis.txt").read_text() == "three years of work"
    # A folder with a config.yaml of something else is no run either.
    (thesis / "config.yaml").write_text("title: my thesis\n")
    with pytest.raises(RunError, match="not a kinject run"):
        RunDir.check_new(thesis, force=True)
    # An empty folder and a run are replaced.
    for name, content in (("empty", None), ("run", {"model": {"model": "m"}, "train": {"seed": 1}})):
        target = tmp_path / name
        target.mkdir()
        if content:
            RunDir(target).write_config(content)
        with RunDir.create(target, force=True) as new:
            new.write_config({"model": {"model": "new"}})
        assert RunDir(target).read_config() == {"model": {"model": "new"}}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("cut", ["empty", "header", "data"])
def test_a_truncated_or_empty_adapter_is_named_before_loading(cut, tmp_path, tiny_model_dir, capsys, monkeypatch):
    import kinject.models.generate
    import kinject.sharing.merge

    run = fake_run(tmp_path / "run", model=str(tiny_model_dir))
    data = run.adapter_weights().read_bytes()
    cut_at = {"empty": 0, "header": 20, "data": len(data) - 3}[cut]
    run.adapter_weights().write_bytes(data[:cut_at])
    with pytest.raises(RunError, match=r"adapter_model\.safetensors is damaged \(truncated or empty\)"):
        run.require_adapter()
    for module in (kinject.models.generate, kinject.sharing.merge):  # where ask and merge load the model
        monkeypatch.setattr(module, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for argv in (["ask", str(run.path), "Hi?"], ["merge", str(run.path)]):
        assert main(argv) == EXIT_ERROR
        err = capsys.readouterr().err
        assert "is damaged (truncated or empty): retrain or resume the run" in err and "Traceback" not in err


def test_an_unwritable_out_says_why(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)  # as a read-only folder does for anyone but root
    with pytest.raises(Exception, match=r"cannot write .*run: Permission denied \(in "):
        RunDir.check_new(tmp_path / "run")
