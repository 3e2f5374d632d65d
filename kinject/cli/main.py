"""`python -m kinject <verb>`: the terminal face of the pipeline.

The parser (``kinject.cli.parser``) is generated from the config dataclasses; ``--config FILE.yaml`` reads whole
sections in the format of a run's ``config.yaml``, and options given on the command line override it. Each ``cmd_*``
turns the parsed options into config objects (``kinject.settings.resolve.resolve_configs``), runs its verb and prints
the outcome. The web face builds the same dataclasses and calls the same verbs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..runs import RunDir
from ..runtime.errors import KinjectError, describe_os_error
from ..runtime.progress import Progress, TqdmProgress
from ..settings.fields import describe_fields, to_dict
from ..settings.places import chat_endpoint
from ..settings.resolve import READS_THE_RUN, VERB_SECTIONS, resolve_configs
from ..settings.stages import ConfigError, PrepareConfig
from ..training import processes
from .parser import build_parser

EXIT_OK, EXIT_ERROR, EXIT_NO_SOURCE = 0, 1, 2

# ----------------------------------------------------------------------------------------- options to configs


def _given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line."""
    return {i.name: getattr(args, i.name) for i in describe_fields(cls) if hasattr(args, i.name)}


def _config_file(path: str | None) -> dict[str, dict[str, Any]]:
    """The sections of a ``--config`` file (the format of a run's config.yaml)."""
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values() if v is not None):
        raise ConfigError(f"--config: {path} must hold sections (mappings) such as 'train:' or 'blocks:'")
    return {k: v or {} for k, v in data.items()}


def _read_urls_file(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"--urls-file: cannot read {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def verb_configs(verb: str, args: argparse.Namespace) -> dict[str, Any]:
    """The config objects that a verb's options (and its ``--config`` file) describe, by section (see
    ``kinject.settings.resolve.resolve_configs``)."""
    given = {name: _given(args, cls) for name, cls in VERB_SECTIONS[verb].items()}
    saved = RunDir(args.run_dir).require().read_config() if verb in READS_THE_RUN else None
    return resolve_configs(
        verb,
        given,
        _config_file(getattr(args, "config", None)),
        saved=saved,
        resume=getattr(args, "resume", False),
        extra_urls=[u for f in getattr(args, "urls_file", None) or [] for u in _read_urls_file(f)],
        endpoint=chat_endpoint(),
    )


# ------------------------------------------------------------------------------------------------------- verbs


def cmd_model(args: argparse.Namespace) -> int:
    from ..models.loading import model_info

    model = verb_configs("model", args)["model"]
    info = model_info(model.model, model.revision, TqdmProgress())
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            print(f"{key:15} {shown}")
    return EXIT_OK


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..corpus.prepare import NoUsableSourceError, prepare

    config = PrepareConfig(**verb_configs("prepare", args))
    try:
        result = prepare(config, args.out, force=args.force, progress=TqdmProgress())
    except NoUsableSourceError as exc:
        _print_sources(exc.rows)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_SOURCE
    _print_sources(result.rows)
    _print_questions(result.questions)
    s = result.stats
    ok = sum(r["status"] == "ok" for r in result.rows)
    print(
        f"\n{ok}/{len(result.rows)} sources used · {s.corpus_tokens:,} tokens · {s.blocks} blocks of "
        f"{s.block_size} · packing efficiency {s.packing_efficiency:.1%}\nwrote {result.run_dir}"
    )
    return EXIT_OK


def _print_questions(rows: list[dict[str, Any]]) -> None:
    """The user's own question-answer pairs read, and each one whose answer the pages do not support."""
    if not rows:
        return
    warned = [r for r in rows if r.get("warning")]
    print(f"\n{len(rows)} question-answer pairs of your own" + (f", {len(warned)} with a warning:" if warned else ""))
    for r in warned:
        print(f"  {r['file']}:{r['line']}: {r['warning']} ({r['question']})")


def _print_sources(rows: list[dict[str, Any]]) -> None:
    print(f"{'status':10} {'tokens':>7} {'chars':>7}  source / title or error")
    for r in rows:
        detail = r["title"] if r["status"] == "ok" else r["error"]
        print(f"{r['status']:10} {r['tokens']:>7} {r['chars']:>7}  {r['input']}\n{'':27}{detail}")


def cmd_train(args: argparse.Namespace) -> int:
    from ..eval import format_table
    from ..runtime.jobs import StatusRecorder
    from ..training.loop import TrainError
    from ..training.pipeline import train_then_evaluate

    c = verb_configs("train", args)
    devices = processes.devices_of(RunDir(args.run_dir), c["train"], args.resume)
    if devices > 1 and processes.world_size() == 1:  # start again as N processes (a resume: as many as before)
        return _train_launched(devices, args.argv, args.run_dir)
    if processes.world_size() > 1:  # the launcher ends every process when one fails: say so, and clean up
        signal.signal(signal.SIGTERM, _another_process_ended)
    request = {
        "config": c["train"],
        "blocks": c["blocks"],
        "augment": c["augment"],
        "evaluation": c["eval"],
        "generation": c["generation"],
    }
    recorder = StatusRecorder(RunDir(args.run_dir), inner=TqdmProgress() if processes.is_main() else Progress())
    recorder.persist = processes.is_main()  # the main process keeps the run's status for all

    def on_sigint(signum: int, frame: Any) -> None:
        if recorder.stop_event.is_set():
            raise KeyboardInterrupt
        recorder.stop_event.set()
        print("\nstopping after this step (Ctrl-C again to abort without saving)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        outcome = train_then_evaluate(args.run_dir, progress=recorder, resume=args.resume, **request)
    except TrainError as exc:
        if exc.phase:  # the phase that failed, not the last one reported
            recorder.update(phase=exc.phase)
        recorder.close("failed", error=str(exc))
        processes.record_error(str(exc))  # for the launch's record of the process that failed first
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        recorder.close("failed", error="aborted by the user")
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    result = outcome.result
    recorder.close(result.status, message=outcome.message)
    if not processes.is_main():  # the main process reports for all
        return EXIT_OK
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    print(
        f"{result.status}: step {result.step}/{result.total_steps}, final loss {loss}, "
        f"{result.seconds:.0f} s; adapter in {result.adapter_dir}" + (f"\n{result.note}" if result.note else "")
    )
    if outcome.report is not None:
        print(format_table(outcome.report))
    if outcome.eval_error:
        print(f"error: the evaluation did not finish: {outcome.eval_error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _another_process_ended(signum: int, frame: Any) -> None:
    from ..training.loop import TrainError

    raise TrainError(processes.ENDED_BY_SIGTERM)


def _train_launched(devices: int, argv: list[str], run_dir: str) -> int:
    """``kinject train`` again as ``devices`` processes; Ctrl-C (or SIGTERM, or the terminal closing) stops them at
    the next step, a second one at once."""
    from ..training.launch import run_launched

    stop = {"asked": 0}

    def on_signal(signum: int, frame: Any) -> None:
        stop["asked"] += 1
        if stop["asked"] > 1:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort without saving)...", file=sys.stderr)

    print(f"training on {devices} processes under accelerate launch", file=sys.stderr)
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, on_signal) for number in handled}
    try:
        launched = run_launched(devices, argv, lambda: stop["asked"] > 0, run_dir=run_dir)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if launched.failure:
        print(f"error: {launched.failure}", file=sys.stderr)
    return EXIT_OK if launched.code == 0 else EXIT_ERROR


def cmd_augment(args: argparse.Namespace) -> int:
    from ..augment import KINDS, AugmentError, ensure_augmentation, format_report, teacher_answers

    config = verb_configs("augment", args)["augment"]
    counts = {"paraphrase": config.paraphrases_per_passage, "qa": 1, "replay": config.replay_prompts}
    kinds = tuple(k for k in KINDS if counts[k])
    try:
        result = ensure_augmentation(args.run_dir, config, kinds, TqdmProgress())
    except (AugmentError, InterruptedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    RunDir(args.run_dir).update_config(augment=to_dict(config))  # what training uses unless told otherwise
    print(f"{'kind':11} {'kept':>5} {'made':>5} {'seconds':>8}")
    for kind in kinds:
        rows = result.rows[kind]
        origin = "generated now" if kind in result.generated else "cached"
        taught = teacher_answers(rows)
        teacher = f", {taught} answers by the generator" if taught is not None else ""
        print(f"{kind:11} {len(result.kept(kind)):>5} {len(rows):>5} {result.seconds[kind]:>8.0f}  {origin}{teacher}")
    for kind in kinds:
        for row in result.kept(kind)[:2]:
            shown = row.get("text") or f"Q: {row['question']}  A: {row['answer']}"
            print(f"\n[{kind}] {shown[:300]}")
    if result.report is not None:
        print(f"\nThe training data, fact by fact ({RunDir(args.run_dir).data_report_path}):\n")
        print(format_report(result.report))
    return EXIT_OK


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..augment import AugmentError
    from ..training.ablate import ablate, format_ablation
    from ..training.loop import TrainError

    c = verb_configs("ablate", args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: {args.seeds!r} is not a comma-separated list of integers") from None
    try:
        data = ablate(
            args.run_dir,
            variants,
            seeds,
            c["train"],
            c["blocks"],
            c["augment"],
            c["eval"],
            c["generation"],
            TqdmProgress(),
            reuse=not args.retrain,
        )
    except (AugmentError, TrainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"the variants finished before it are in {args.run_dir}'s ablation table", file=sys.stderr)
        return EXIT_ERROR
    print(format_ablation(data))
    variants = RunDir(args.run_dir).ablation_dir
    print(f"wrote the ablation table into {args.run_dir}; the variants' runs are under {variants}/")
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from ..sharing.merge import merge

    print(f"merged model in {merge(args.run_dir, TqdmProgress())}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from ..sharing.export import export

    c = verb_configs("export", args)
    result = export(args.run_dir, c["export"], c["generation"], TqdmProgress())
    written = [*result.files, result.modelfile, result.base, result.adapter, result.adapter_modelfile]
    for path in [p for p in written if p is not None]:
        print(f"wrote {path} ({path.stat().st_size / 1e6:,.1f} MB)")
    if not result.template:
        print("the chat template is not ChatML: the Modelfile has no TEMPLATE (see its comment)", file=sys.stderr)
    for start in range(0, len(result.commands), 3):  # per model: ollama create, ollama run, llama-cli
        what = "the adapter over its base" if "--lora" in result.commands[start + 2] else "the merged model"
        print(f"\nrun {what} with Ollama:\n  " + "\n  ".join(result.commands[start : start + 2]))
        print(f"or with llama.cpp:\n  {result.commands[start + 2]}")
    return EXIT_OK


def cmd_ask(args: argparse.Namespace) -> int:
    from ..models.generate import answer, load_for_run, shown_answer
    from ..models.hub import adapter_run

    gen = verb_configs("ask", args)["generation"]
    run = adapter_run(args.run_dir, TqdmProgress()).require()
    loaded = load_for_run(run, with_adapter=not args.base, progress=TqdmProgress())
    print(shown_answer(answer(loaded, args.question, gen)))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.serve import serve

    c = verb_configs("serve", args)
    serve(c["model"], c["serve"], c["generation"], TqdmProgress())
    return EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    from ..models.client import ChatClientError, chat_once

    c = verb_configs("chat", args)
    try:
        for piece in chat_once(c["chat"], args.message, c["generation"], stream=not args.no_stream):
            print(piece, end="", flush=True)
    except ChatClientError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print()
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from ..eval import evaluate, format_table
    from ..models.hub import adapter_run

    c = verb_configs("eval", args)
    run = adapter_run(args.run_dir, TqdmProgress())
    report = evaluate(run, c["eval"], TqdmProgress(), c["generation"])
    print(format_table(report))
    run_dir = RunDir(run)
    kind = run_dir.eval_kind(report.to_dict())
    full_kept = kind != "full" and run_dir.read_eval("full") is not None
    kept = " (the complete full evaluation, eval.json, is kept beside it)" if full_kept else ""
    print(f"\nwrote {', '.join(run_dir.eval_files(kind))} in {run}{kept}")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    import traceback

    from ..models.hub import scrub
    from ..sharing.publish import PublishError, push

    config = verb_configs("push", args)["publish"]
    if not config.repo:
        raise ConfigError("--repo: give the Hub repository as OWNER/NAME")
    token = os.environ.get("HF_TOKEN")
    try:
        result = push(args.run_dir, config, token, TqdmProgress())
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"nothing in {args.run_dir} was changed", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - an unexpected failure still must not print the token
        print(scrub(traceback.format_exc(), token), file=sys.stderr)
        return EXIT_ERROR
    if result.unchanged:
        print(f"{result.repo_id} already holds this adapter and card on {result.revision}: nothing changed")
    else:
        state = "new repository" if result.created else "new commit"
        privacy = "private" if result.private else "public"
        print(f"pushed {len(result.files)} files to {result.repo_id} ({privacy}, {state} on {result.revision})")
    if result.note:
        print(result.note, file=sys.stderr)
    print(f"commit: {result.commit_url}")
    print(result.url)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "model": cmd_model,
    "prepare": cmd_prepare,
    "train": cmd_train,
    "augment": cmd_augment,
    "ablate": cmd_ablate,
    "merge": cmd_merge,
    "export": cmd_export,
    "ask": cmd_ask,
    "serve": cmd_serve,
    "chat": cmd_chat,
    "eval": cmd_eval,
    "push": cmd_push,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --devices N starts the same command again
    try:
        return COMMANDS[args.verb](args)
    except KinjectError as exc:  # every stage's expected failure: its message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # permissions, a full or read-only disk, a missing file: a message, not a traceback
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
