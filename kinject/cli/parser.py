"""The parser of `python -m kinject <verb>`, generated from the config dataclasses.

Options come from the fields of each verb's config sections (``kinject.settings.resolve.VERB_SECTIONS``) through
transformers' ``HfArgumentParser`` (as trl does): one option per field, named after it (``--learning-rate``), its docs
as the help text, its default shown, grouped by the section of ``config.yaml`` it belongs to. Every default is left out
of the parsed namespace, so an option given can be told from a default. ``kinject.cli.main`` runs the verbs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..settings.fields import describe_fields
from ..settings.presets import DEFAULT_PRESET, PRESET_FIELDS, PRESETS
from ..settings.resolve import VERB_SECTIONS


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
    "export": {
        "help": "write the merged model or the LoRA adapter as GGUF with an Ollama Modelfile (llama.cpp, Ollama)",
        "description": "Fold RUN_DIR's adapter into its base and write it into RUN_DIR/export/: one GGUF file per "
        "--types (model-q8_0.gguf, model-f16.gguf) and an Ollama Modelfile (FROM the first file, the chat template "
        "as TEMPLATE when it is ChatML, stop tokens, and the generation options as PARAMETERs). With --what lora (or "
        "both) the adapter alone as adapter.gguf, for llama.cpp's --lora and Ollama's ADAPTER, over the base's GGUF "
        "(the bundled model's own file, else base-TYPE.gguf) with Modelfile.adapter. Llama, Mistral and Qwen2 models "
        "with a byte-level BPE tokenizer; the folder is written whole or not at all, after a check of the free disk "
        "space. Prints the commands that run it (ollama create, llama-cli).",
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
    """The whole command line: one sub-parser per verb (``args.verb`` names the one chosen)."""
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
