"""`python -m kinject <verb>`: the command-line face of the pipeline.

Each verb builds the same config dataclasses the UI builds and calls the same function; help texts come from the
dataclass field docs so the two never drift apart.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from . import runs
from .config import (
    DEFAULT_PRESET,
    PRESETS,
    BlocksConfig,
    ConfigError,
    FetchConfig,
    GenerationConfig,
    ModelConfig,
    PrepareConfig,
    TrainConfig,
    field_help,
)
from .models import ModelError
from .progress import TqdmProgress

EXIT_OK, EXIT_ERROR, EXIT_NO_SOURCE = 0, 1, 2


def _h(cls: type, name: str) -> str:
    return field_help(cls, name).replace("%", "%%")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=ModelConfig().model, help=_h(ModelConfig, "model"))
    p.add_argument("--revision", default=None, help=_h(ModelConfig, "revision"))


def cmd_model(args: argparse.Namespace) -> int:
    from .models import model_info

    info = model_info(args.model, args.revision, TqdmProgress())
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


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import NoUsableSourceError, prepare

    urls = list(args.url or [])
    for f in args.urls_file or []:
        urls += _read_urls_file(f)
    config = PrepareConfig(
        urls=urls,
        files=list(args.file or []),
        model=ModelConfig(model=args.model, revision=args.revision),
        fetch=FetchConfig(
            timeout_s=args.timeout,
            total_timeout_s=args.total_timeout,
            max_bytes=args.max_bytes,
            max_concurrency=args.concurrency,
            allow_private_urls=args.allow_private_urls,
        ),
        blocks=BlocksConfig(block_size=args.block_size, pad_last=args.pad_last),
    )
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


class _Parser(argparse.ArgumentParser):
    """Verb parsers show each option's default in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinject",
        description="Teach a chat LLM new facts from web pages with QLoRA, and show that it still chats.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    p = sub.add_parser("model", help="resolve a model (converting the bundled one once) and describe it")
    _add_model(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_model)

    fc, bc = FetchConfig(), BlocksConfig()
    p = sub.add_parser(
        "prepare",
        help="fetch URLs / read files into a clean corpus and packed token blocks in a run folder",
        description="Fetch URLs and read files, extract main content, clean and deduplicate, tokenize and pack "
        "into blocks. Writes config.yaml, sources.jsonl, corpus/, blocks/ and blocks.json into --out. Exits 0 "
        "when at least one source gave text, 2 when none did (and writes nothing).",
    )
    p.add_argument("--url", action="append", metavar="URL", help="a page to fetch (repeatable)")
    p.add_argument("--urls-file", action="append", metavar="F", help="a file with one URL per line (# comments)")
    p.add_argument("--file", action="append", metavar="PATH", help=_h(PrepareConfig, "files") + " (repeatable)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder to create")
    p.add_argument("--force", action="store_true", help="replace RUN_DIR if it exists (only once the new one is done)")
    _add_model(p)
    p.add_argument("--block-size", type=int, default=bc.block_size, help=_h(BlocksConfig, "block_size"))
    p.add_argument("--pad-last", action="store_true", help=_h(BlocksConfig, "pad_last"))
    p.add_argument("--allow-private-urls", action="store_true", help=_h(FetchConfig, "allow_private_urls"))
    p.add_argument("--timeout", type=float, default=fc.timeout_s, help=_h(FetchConfig, "timeout_s"))
    p.add_argument("--total-timeout", type=float, default=fc.total_timeout_s, help=_h(FetchConfig, "total_timeout_s"))
    p.add_argument("--max-bytes", type=int, default=fc.max_bytes, help=_h(FetchConfig, "max_bytes"))
    p.add_argument("--concurrency", type=int, default=fc.max_concurrency, help=_h(FetchConfig, "max_concurrency"))
    p.set_defaults(func=cmd_prepare)

    _add_train_verbs(sub)
    _add_eval_verb(sub)
    return parser


def _add_train_verbs(sub: Any) -> None:
    tc = TrainConfig
    p = sub.add_parser(
        "train",
        help="train a LoRA/QLoRA adapter on a prepared run (Ctrl-C stops and saves)",
        description="Train a LoRA adapter on RUN_DIR's blocks; writes adapter/, checkpoints/, status.json and "
        "metrics.jsonl. Ctrl-C stops at the next step and saves the adapter trained so far; --resume continues "
        "from the last checkpoint. Presets: "
        + "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in vals.items()) for name, vals in PRESETS.items()),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS), help=_h(tc, "preset"))
    p.add_argument("--epochs", type=float, help=_h(tc, "epochs"))
    p.add_argument("--max-steps", type=int, help=_h(tc, "max_steps"))
    p.add_argument("--lr", type=float, dest="learning_rate", help=_h(tc, "learning_rate"))
    p.add_argument("--rank", type=int, dest="lora_r", help=_h(tc, "lora_r"))
    p.add_argument("--alpha", type=int, dest="lora_alpha", help=_h(tc, "lora_alpha"))
    p.add_argument("--dropout", type=float, dest="lora_dropout", help=_h(tc, "lora_dropout"))
    p.add_argument("--batch-size", type=int, help=_h(tc, "batch_size"))
    p.add_argument("--block-size", type=int, help=_h(tc, "block_size"))
    p.add_argument("--text-format", choices=["raw", "chat", "both"], help=_h(tc, "text_format"))
    p.add_argument("--quantization", choices=["auto", "4bit", "none"], default="auto", help=_h(tc, "quantization"))
    p.add_argument("--save-steps", type=int, default=TrainConfig.save_steps, help=_h(tc, "save_steps"))
    p.add_argument("--seed", type=int, default=TrainConfig.seed, help=_h(tc, "seed"))
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint (same schedule and data)")
    p.add_argument("--eval", action="store_true", dest="eval_at_end", help=_h(tc, "eval_at_end"))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("merge", help="merge the adapter into a 16-bit copy of the base (merged/, for TGI)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=cmd_merge)

    gc = GenerationConfig
    p = sub.add_parser("ask", help="answer one chat question with the run's adapter (or --base)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("question")
    p.add_argument("--base", action="store_true", help="answer with the base model instead of the adapter")
    p.add_argument(
        "--max-new-tokens", type=int, default=GenerationConfig.max_new_tokens, help=_h(gc, "max_new_tokens")
    )
    p.add_argument("--temperature", type=float, default=GenerationConfig.temperature, help=_h(gc, "temperature"))
    p.add_argument("--top-p", type=float, default=GenerationConfig.top_p, help=_h(gc, "top_p"))
    p.set_defaults(func=cmd_ask)


def cmd_train(args: argparse.Namespace) -> int:
    from .jobs import StatusRecorder
    from .train import TrainError, train

    fields = (
        "text_format",
        "epochs",
        "max_steps",
        "learning_rate",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "batch_size",
        "block_size",
    )
    config = TrainConfig(
        preset=args.preset,
        quantization=args.quantization,
        save_steps=args.save_steps,
        seed=args.seed,
        eval_at_end=args.eval_at_end,
        **{k: getattr(args, k) for k in fields if getattr(args, k) is not None},
    )
    runs.read_config(args.run_dir)
    recorder = StatusRecorder(args.run_dir, inner=TqdmProgress())

    def on_sigint(signum: int, frame: Any) -> None:
        if recorder.stop_event.is_set():
            raise KeyboardInterrupt
        recorder.stop_event.set()
        print("\nstopping after this step (Ctrl-C again to abort without saving)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = train(args.run_dir, config, recorder, resume=args.resume)
    except TrainError as exc:
        recorder.close("failed", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        recorder.close("failed", error="aborted by the user")
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    recorder.close(result.status, message=f"{result.status} at step {result.step}/{result.total_steps}")
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    print(
        f"{result.status}: step {result.step}/{result.total_steps}, final loss {loss}, "
        f"{result.seconds:.0f} s; adapter in {result.adapter_dir}"
    )
    if config.eval_at_end and result.status == "done":
        from .config import EvalConfig
        from .evaluate import evaluate, format_table

        print(format_table(evaluate(args.run_dir, EvalConfig(), TqdmProgress())))
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from .merge import merge

    print(f"merged model in {merge(args.run_dir, TqdmProgress())}")
    return EXIT_OK


def cmd_ask(args: argparse.Namespace) -> int:
    from .generate import answer, load_for_run

    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    loaded = load_for_run(args.run_dir, with_adapter=not args.base)
    print(answer(loaded, args.question, gen))
    return EXIT_OK


def _add_eval_verb(sub: Any) -> None:
    from .config import EvalConfig

    ec, gc = EvalConfig, GenerationConfig
    p = sub.add_parser(
        "eval",
        help="score base vs adapter: knowledge, retention, forgetting (writes eval.json, eval.md, eval.png)",
        description="Answer knowledge probes (--probes FILE, or probes cut from the run's corpus) and kinject's "
        "retention probes with the base model and with the adapter, and measure forgetting (KL divergence on "
        "general chat answers, perplexity ratio on general text). Prints the score table and writes eval.json, "
        "eval.md and eval.png into RUN_DIR. A run without an adapter is evaluated on the base alone.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--probes", metavar="FILE", help=_h(ec, "probes"))
    p.add_argument("--auto-probes", type=int, default=ec.auto_probes, metavar="N", help=_h(ec, "auto_probes"))
    p.add_argument("--max-new-tokens", type=int, default=gc.max_new_tokens, help=_h(gc, "max_new_tokens"))
    p.add_argument("--temperature", type=float, default=gc.temperature, help=_h(gc, "temperature"))
    p.add_argument("--top-p", type=float, default=gc.top_p, help=_h(gc, "top_p"))
    p.add_argument("--kl-max-new-tokens", type=int, default=ec.kl_max_new_tokens, help=_h(ec, "kl_max_new_tokens"))
    p.add_argument("--no-retention", action="store_true", help="leave out kinject's shipped retention probes")
    p.add_argument("--no-forgetting", action="store_true", help="skip the KL divergence and perplexity ratio")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import EvalConfig
    from .evaluate import EVAL_MD, EVAL_PNG, EvalError, evaluate, format_table

    config = EvalConfig(
        probes=args.probes,
        auto_probes=args.auto_probes,
        retention=not args.no_retention,
        forgetting=not args.no_forgetting,
        kl_max_new_tokens=args.kl_max_new_tokens,
        generation=GenerationConfig(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p
        ),
    )
    try:
        report = evaluate(args.run_dir, config, TqdmProgress())
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(format_table(report))
    names = ", ".join((runs.EVAL_JSON, EVAL_MD, EVAL_PNG))
    print(f"\nwrote {names} in {args.run_dir}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ModelError, runs.RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
