"""`python -m kinject <verb>`: the command-line face of the pipeline.

Options are generated from the config dataclasses of ``kinject.config`` by transformers' ``HfArgumentParser`` (as
trl does): one option per field, named after it (``--learning-rate``), its docs as the help text, its default shown,
grouped by the section of ``config.yaml`` it belongs to. ``--config FILE.yaml`` reads whole sections in the format
of a run's ``config.yaml``; options given on the command line override it. The app builds the same dataclasses and
calls the same verbs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .config import (
    DEFAULT_PRESET,
    PRESET_FIELDS,
    PRESETS,
    AugmentConfig,
    ChatConfig,
    ConfigError,
    ModelConfig,
    PrepareConfig,
    TrainConfig,
    describe_fields,
    from_dict,
    to_dict,
    training_blocks,
)
from .errors import KinjectError
from .progress import TqdmProgress
from .runs import RunDir
from .verbs import VERB_SECTIONS, describe_os_error

EXIT_OK, EXIT_ERROR, EXIT_NO_SOURCE = 0, 1, 2

# --------------------------------------------------------------------------------------- generated options


class _Extend(argparse.Action):
    """A list option that collects: ``--url A --url B`` and ``--urls A B`` both give [A, B]."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), *values])


def _default_text(verb: str, section: str, info: Any) -> str:
    if section == "train" and info.name in PRESET_FIELDS["train"]:
        return "the preset's"
    if verb == "train" and section == "blocks":
        return (
            "the preset's, else what the run was packed with"
            if info.name in PRESET_FIELDS["blocks"]
            else ("what the run was packed with")
        )
    if info.default is None:
        return "unset"
    if info.kind == "list":
        return ", ".join(info.default) or "none"
    return str(info.default)


def _section_parser(verb: str, sections: dict[str, type]) -> argparse.ArgumentParser:
    """A parent parser holding the generated options of ``sections``: every default is left out of the parsed
    namespace (argparse.SUPPRESS), so an option given explicitly can be told from a default."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(sections.values()), add_help=False)
    by_dest = {info.name: (section, info) for section, cls in sections.items() for info in describe_fields(cls)}
    for action in parser._actions:
        section, info = by_dest[action.dest]
        if action.option_strings[0].startswith("--no"):
            action.help = f"turn off --{info.name.replace('_', '-')}"
        else:
            action.option_strings.sort(key=lambda o: o != info.option)  # --field-name first, then its aliases
            text = (action.help or "").replace("%", "%%")
            action.help = f"{text} (default: {_default_text(verb, section, info)})"
        if info.kind == "list":
            action.__class__ = _Extend
        elif info.kind == "bool" and action.nargs == "?":
            action.metavar = "true|false"
        action.default = argparse.SUPPRESS
    return parser


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


def section_values(verb: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each section's values for ``verb``: the ``--config`` file's, then the options given.

    An explicit ``--preset`` re-chooses what the preset sets, so the file's values of those fields give way.
    """
    sections = VERB_SECTIONS[verb]
    from_file = _config_file(getattr(args, "config", None))
    given = {name: _given(args, cls) for name, cls in sections.items()}
    values = {name: {**from_file.get(name, {}), **given[name]} for name in sections}
    if "preset" in given.get("train", {}):
        for name in ("train", "blocks"):
            for key in PRESET_FIELDS[name]:
                if key not in given[name]:
                    values[name].pop(key, None)
    return values


# ------------------------------------------------------------------------------------------------------- verbs


def cmd_model(args: argparse.Namespace) -> int:
    from .models import model_info

    model = verb_configs("model", args)["model"]
    info = model_info(model.model, model.revision, TqdmProgress())
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            print(f"{key:15} {shown}")
    return EXIT_OK


def _read_urls_file(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"--urls-file: cannot read {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def verb_configs(verb: str, args: argparse.Namespace) -> dict[str, Any]:
    """The config objects that a verb's options (and its ``--config`` file) describe, by section.

    For ``train`` the blocks are those to train on: what the run was packed with, then the preset's, then the
    options (None with ``--resume``, which continues the run's saved configuration); the augmentation is the
    run's, then the options.
    """
    values = section_values(verb, args)
    if verb == "prepare":
        inputs = values["inputs"]
        inputs["urls"] = list(inputs.get("urls", [])) + [u for f in args.urls_file or [] for u in _read_urls_file(f)]
    configs = {
        name: from_dict(cls, values[name], name)
        for name, cls in VERB_SECTIONS[verb].items()
        if not (verb in ("train", "ablate") and name == "blocks")
    }
    if verb in ("train", "ablate", "augment"):
        run = RunDir(args.run_dir).require()
        # The augmentation the run was trained (or augmented) with, then the options (as for the blocks).
        configs["augment"] = from_dict(AugmentConfig, {**run.section("augment"), **values["augment"]}, "augment")
    if verb in ("train", "ablate"):
        if getattr(args, "resume", False):
            changed = sorted({*_given(args, TrainConfig), *values["blocks"]} - {"eval_at_end"})
            if changed:
                raise ConfigError(
                    f"--resume continues the run's saved configuration; leave out {', '.join(changed)} "
                    "(or train afresh without --resume)"
                )
            configs["blocks"] = None
        else:
            configs["blocks"] = training_blocks(run.section("blocks"), configs["train"].preset, values["blocks"])
    return configs


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import NoUsableSourceError, prepare

    config = PrepareConfig(**verb_configs("prepare", args))
    try:
        result = prepare(config, args.out, force=args.force, progress=TqdmProgress())
    except NoUsableSourceError as exc:
        _print_sources(exc.rows)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_SOURCE
    _print_sources(result.rows)
    s = result.stats
    ok = sum(r["status"] == "ok" for r in result.rows)
    print(
        f"\n{ok}/{len(result.rows)} sources used · {s.corpus_tokens:,} tokens · {s.blocks} blocks of "
        f"{s.block_size} · packing efficiency {s.packing_efficiency:.1%}\nwrote {result.run_dir}"
    )
    return EXIT_OK


def _print_sources(rows: list[dict[str, Any]]) -> None:
    print(f"{'status':10} {'tokens':>7} {'chars':>7}  source / title or error")
    for r in rows:
        detail = r["title"] if r["status"] == "ok" else r["error"]
        print(f"{r['status']:10} {r['tokens']:>7} {r['chars']:>7}  {r['input']}\n{'':27}{detail}")


def cmd_train(args: argparse.Namespace) -> int:
    from .eval import format_table
    from .jobs import StatusRecorder, train_then_evaluate
    from .train import TrainError

    c = verb_configs("train", args)
    request = {
        "config": c["train"],
        "blocks": c["blocks"],
        "augment": c["augment"],
        "evaluation": c["eval"],
        "generation": c["generation"],
    }
    recorder = StatusRecorder(args.run_dir, inner=TqdmProgress())

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
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        recorder.close("failed", error="aborted by the user")
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    result = outcome.result
    recorder.close(result.status, message=outcome.message)
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


def cmd_augment(args: argparse.Namespace) -> int:
    from .augment import KINDS, AugmentError, ensure_augmentation

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
        print(f"{kind:11} {len(result.kept(kind)):>5} {len(rows):>5} {result.seconds[kind]:>8.0f}  {origin}")
    for kind in kinds:
        for row in result.kept(kind)[:2]:
            shown = row.get("text") or f"Q: {row['question']}  A: {row['answer']}"
            print(f"\n[{kind}] {shown[:300]}")
    return EXIT_OK


def cmd_ablate(args: argparse.Namespace) -> int:
    from .ablate import ablate, format_ablation
    from .augment import AugmentError
    from .train import TrainError

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
    print(f"wrote the ablation table into {args.run_dir}; the variants' runs are under {args.run_dir}/ablation/")
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from .merge import merge

    print(f"merged model in {merge(args.run_dir, TqdmProgress())}")
    return EXIT_OK


def cmd_ask(args: argparse.Namespace) -> int:
    from .generate import shown_answer
    from .publish import adapter_run
    from .serve import Engine, Params

    gen = verb_configs("ask", args)["generation"]
    run = adapter_run(args.run_dir, TqdmProgress()).require()
    model = from_dict(ModelConfig, run.section("model"), "model")
    if not args.base:
        run.require_adapter()
    # The serving engine's own path (chat template, decoding), without the HTTP around it.
    engine = Engine(model.model, None if args.base else {run.name: run}, revision=model.revision)
    target = None if args.base else run.name
    messages = [{"role": "user", "content": args.question}]
    print(shown_answer(engine.generate(target, engine.chat_ids(target, messages), Params.from_generation(gen)).text))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    c = verb_configs("serve", args)
    serve(c["model"], c["serve"], c["generation"], TqdmProgress())
    return EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    from .serve import ChatClientError, chat_once

    c = verb_configs("chat", args)
    config = c["chat"]
    if "endpoint" not in _given(args, ChatConfig) and os.environ.get("KINJECT_ENDPOINT"):
        config = ChatConfig(os.environ["KINJECT_ENDPOINT"], config.model, config.system)
    try:
        for piece in chat_once(config, args.message, c["generation"], stream=not args.no_stream):
            print(piece, end="", flush=True)
    except ChatClientError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print()
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from .eval import evaluate, format_table
    from .publish import adapter_run

    c = verb_configs("eval", args)
    run = adapter_run(args.run_dir, TqdmProgress())
    report = evaluate(run, c["eval"], TqdmProgress(), c["generation"])
    print(format_table(report))
    print(f"\nwrote {', '.join(RunDir.EVAL_FILES)} in {run}")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    import traceback

    from .publish import PublishError, push, scrub

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


# ----------------------------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Verb parsers: help texts already say their defaults (see ``_section_parser``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


_PRESETS_TEXT = "; ".join(
    f"{name}: " + ", ".join(f"{k}={v}" for part in vals.values() for k, v in part.items())
    for name, vals in PRESETS.items()
)
_CONFIG_HELP = "read these sections from a YAML file in the format of a run's config.yaml; options override it"

VERBS: dict[str, dict[str, str]] = {
    "model": {
        "help": "resolve a model (converting the bundled one once) and describe it",
        "description": "Resolve a model (the bundled one is converted once into the cache) and print what it is.",
    },
    "prepare": {
        "help": "fetch URLs / read files into a clean corpus and packed token blocks in a run folder",
        "description": "Fetch URLs and read files, extract main content, clean and deduplicate, tokenize and pack "
        "into blocks. Writes a run folder (--out): config.yaml, sources.jsonl, the corpus and its blocks. Exits 0 "
        "when at least one source gave text, 2 when none did (and writes nothing).",
    },
    "train": {
        "help": "train a LoRA/QLoRA adapter on a prepared run (Ctrl-C stops and saves)",
        "description": "Train a LoRA adapter on RUN_DIR's blocks (packed once for the block size and text format "
        "asked for, then cached); writes the adapter, checkpoints, status and metrics into RUN_DIR. Ctrl-C stops "
        "at the next step and saves the adapter trained so far; --resume continues from the last checkpoint with "
        "the saved configuration. --eval-at-end evaluates afterwards with the eval and generation options. "
        f"Presets ({DEFAULT_PRESET} by default): {_PRESETS_TEXT}.",
    },
    "augment": {
        "help": "generate paraphrases, question-answer pairs and replay data from a run's corpus",
        "description": "Generate, filter and save the augmentation of RUN_DIR's corpus: paraphrases of each passage, "
        "question-answer pairs for each fact, and the base model's answers to general prompts (replay). Training "
        "does this itself when its blocks use augmentation; run it alone to inspect the data first.",
    },
    "ablate": {
        "help": "train and evaluate recipe variants with the same budget and write one comparison table",
        "description": "Train each variant (a '+'-joined list of ingredients: raw, chat or both for the documents, "
        "paraphrase, qa, replay or replay=SHARE, kl, noguard) with each seed for the same number of optimizer "
        "steps (--max-steps, else the first variant's), evaluate each, and write ablation.json and ablation.md "
        "into RUN_DIR (the variants' runs go under RUN_DIR/ablation/; one already trained and evaluated with the "
        "same settings is read back, so an interrupted ablation goes on where it stopped).",
    },
    "merge": {
        "help": "merge the adapter into a 16-bit copy of the base (for TGI)",
        "description": "Merge RUN_DIR's adapter into a 16-bit copy of its base model (safetensors shards).",
    },
    "ask": {
        "help": "answer one chat question with the run's adapter (or --base)",
        "description": "Answer one chat question with RUN_DIR's base model and adapter (or the base alone). "
        "RUN_DIR may be a Hub adapter, OWNER/NAME[@revision], downloaded once into huggingface_hub's cache.",
    },
    "serve": {
        "help": "serve the base model, adapters and merged models over TGI's HTTP protocol",
        "description": "Serve one base model (--model) with any number of LoRA adapters (--adapter NAME=RUN_DIR) "
        "and merged models (--merged NAME=DIR) over every route of Text Generation Inference's API: /generate, "
        "/generate_stream, /, /v1/chat/completions, /v1/completions, /invocations, /tokenize, /chat_tokenize, "
        "/v1/models, /info, /metrics (Prometheus), /health. A request picks an adapter with "
        "parameters.adapter_id or the OpenAI routes' model field, as with TGI; POST /kinject/adapters "
        '{"name", "path"} adds one while the server runs (kinject\'s own route; local folders under '
        "--adapter-root only). Off loopback it needs KINJECT_API_KEY (clients send `Authorization: Bearer KEY`) "
        "or KINJECT_ALLOW_NO_AUTH=1. Runs until Ctrl-C.",
    },
    "chat": {
        "help": "send one chat message to a TGI-protocol server (kinject serve, TGI, vLLM, SGLang)",
        "description": "Send MESSAGE as one user turn to the server at --endpoint (or KINJECT_ENDPOINT) through "
        "huggingface_hub's InferenceClient, to the base model or the adapter named by --model, and print the "
        "answer as it streams.",
    },
    "push": {
        "help": "push the run's adapter with its model card to the Hugging Face Hub (token: HF_TOKEN)",
        "description": "Upload RUN_DIR's adapter/ (and merged/ with --merged) with a model card (sources and their "
        "sha256, corpus and packing, the whole training configuration, the base-vs-adapter evaluation, usage for "
        "peft, TGI and vLLM) to the Hub repository --repo in one commit, creating it private unless --public. "
        "Pushing again makes a new commit of what changed. The token comes from HF_TOKEN (or `hf auth login`), "
        "never from the command line, and is written nowhere. HF_ENDPOINT points at another Hub.",
    },
    "eval": {
        "help": "score base vs adapter: knowledge, retention, forgetting (writes eval.json, eval.md, eval.png)",
        "description": "Answer knowledge probes (--probes FILE, or probes cut from the run's corpus) and kinject's "
        "retention probes with the base model and with the adapter, and measure forgetting (KL divergence on "
        "general chat answers, perplexity ratio on general text). Prints the score table and writes the report "
        "into RUN_DIR. A run without an adapter is evaluated on the base alone. RUN_DIR may be a Hub adapter, "
        "OWNER/NAME[@revision]: it is downloaded, and the report goes into a run folder under the kinject cache "
        "(printed at the end).",
    },
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinject",
        description="Teach a chat LLM new facts from web pages with QLoRA, and show that it still chats.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    for verb, texts in VERBS.items():
        sections = VERB_SECTIONS[verb]
        parents = [_section_parser(verb, sections)] if sections else []
        p = sub.add_parser(verb, parents=parents, **texts)
        for action in p._actions:  # --field_name still parses (HfArgumentParser's form); help shows --field-name
            action.option_strings[:] = [o for o in action.option_strings if "_" not in o]
        if sections:
            p.add_argument("--config", metavar="FILE.yaml", help=_CONFIG_HELP)
        _add_verb_options(verb, p)
        p.set_defaults(func=globals()[f"cmd_{verb}"])
    return parser


def _add_verb_options(verb: str, p: argparse.ArgumentParser) -> None:
    """The options that are actions rather than settings (what to act on, whether to overwrite)."""
    if verb == "model":
        p.add_argument("--json", action="store_true", help="print one JSON object")
    elif verb == "prepare":
        p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder to create")
        p.add_argument("--urls-file", action="append", metavar="F", help="a file with one URL per line (# comments)")
        p.add_argument("--force", action="store_true", help="replace RUN_DIR if it exists (once the new one is done)")
    elif verb == "serve":
        pass
    elif verb == "chat":
        p.add_argument("message", help="what to say (one user turn)")
        p.add_argument("--no-stream", action="store_true", help="print the answer once it is complete")
    else:
        p.add_argument("run_dir", metavar="RUN_DIR")
    if verb == "train":
        p.add_argument("--resume", action="store_true", help="continue from the last checkpoint (saved configuration)")
    elif verb == "ablate":
        p.add_argument("--variants", default="raw,raw+qa,qa+replay", help="comma-separated variants (see above)")
        p.add_argument("--seeds", default="42", help="comma-separated training seeds, each variant once per seed")
        p.add_argument(
            "--retrain",
            action="store_true",
            help="train every variant again, even one already trained and evaluated with the same settings (by "
            "default such a run, e.g. of an interrupted ablation, is read back)",
        )
    elif verb == "ask":
        p.add_argument("question")
        p.add_argument("--base", action="store_true", help="answer with the base model instead of the adapter")


def cli_reference() -> str:
    """Every verb's options as markdown (the README's CLI reference is this text)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = []
    for verb, p in sub.choices.items():
        lines += [f"#### `kinject {verb}`", "", VERBS[verb]["description"], ""]
        lines += ["| option | meaning |", "|---|---|"]
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:
                names = ", ".join(f"`{s}`" for s in action.option_strings)
            else:
                names = f"`{action.metavar or action.dest}`"
            text = (action.help or "").replace("%%", "%").replace("|", "\\|")
            lines.append(f"| {names} | {text} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


REFERENCE_START, REFERENCE_END = "<!-- cli-reference:start -->\n", "<!-- cli-reference:end -->"


def write_reference(readme: str | Path) -> bool:
    """Put ``cli_reference()`` between the README's markers; True when the file changed (`make docs`)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    if REFERENCE_START not in text or REFERENCE_END not in text:
        raise SystemExit(f"{path} lacks the markers {REFERENCE_START.strip()} and {REFERENCE_END}")
    head, rest = text.split(REFERENCE_START, 1)
    new = head + REFERENCE_START + cli_reference() + REFERENCE_END + rest.split(REFERENCE_END, 1)[1]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KinjectError as exc:  # every stage's expected failure: its message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # permissions, a full or read-only disk, a missing file: a message, not a traceback
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
