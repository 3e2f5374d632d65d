"""Serving benchmark: kinject's embedded TGI-protocol server against calling ``generate`` directly.

Usage: ``python bench/serve_bench.py [--model M] [--requests 16] [--max-new-tokens 64] [--clients 1,4,8] [--out F]``

Loads the model once (the bundled SmolLM2-135M-Instruct by default), then measures, on the same prompts with greedy
decoding and the same number of new tokens:

- **direct**: ``model.generate`` in a loop, one request after another (no HTTP, no queue);
- **server, N clients**: N threads streaming ``/generate_stream`` through ``huggingface_hub.InferenceClient``
  against the embedded server on loopback (the server batches the requests running at once, up to
  ``--max-batch-size``).

Reports tokens per second (all generated tokens over the wall time) and time to first token (from sending a
request to its first streamed token; for direct calls, the time to generate one token). Prints JSON lines and a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kinject.serving.engine import Engine, Params  # noqa: E402
from kinject.serving.http import create_app  # noqa: E402
from kinject.serving.server import ServerThread  # noqa: E402

PROMPTS = [
    "Explain in a few sentences how a rainbow forms.",
    "Write a short note thanking a colleague for their help.",
    "List three tips for sleeping better.",
    "What should I pack for a weekend hiking trip?",
    "Describe the water cycle for a ten-year-old.",
    "Give me a simple recipe for pancakes.",
    "Why do cats purr?",
    "How do I start learning to play the guitar?",
]


def direct(engine: Engine, prompts: list[str], max_new_tokens: int) -> dict:
    params = Params(max_new_tokens=max_new_tokens)
    tokens, first = 0, []
    started = time.perf_counter()
    for prompt in prompts:
        ids = engine.chat_ids(None, [{"role": "user", "content": prompt}])
        t0 = time.perf_counter()
        engine.generate(None, ids, Params(max_new_tokens=1))
        first.append(time.perf_counter() - t0)
        tokens += len(engine.generate(None, ids, params).tokens)
    wall = time.perf_counter() - started - sum(first)  # the one-token calls are not part of the throughput
    return {"mode": "direct", "clients": 1, "tokens": tokens, "tokens_per_s": tokens / wall, "ttft_s": first}


def served(url: str, prompts: list[str], max_new_tokens: int, clients: int) -> dict:
    from huggingface_hub import InferenceClient

    def one(prompt: str) -> tuple[int, float]:
        client = InferenceClient(base_url=url)
        t0, ttft, count = time.perf_counter(), None, 0
        for event in client.chat_completion(
            [{"role": "user", "content": prompt}], max_tokens=max_new_tokens, temperature=0, stream=True
        ):
            if event.choices:
                ttft = ttft if ttft is not None else time.perf_counter() - t0
                count += 1
        return count, ttft or 0.0

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, prompts))
    wall = time.perf_counter() - started
    tokens = sum(c for c, _ in results)
    return {
        "mode": "server",
        "clients": clients,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "ttft_s": [t for _, t in results],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--out", help="also write the JSON lines here")
    args = ap.parse_args(argv)
    prompts = (PROMPTS * (args.requests // len(PROMPTS) + 1))[: args.requests]
    engine = Engine(args.model, max_concurrent_requests=64, max_batch_size=args.max_batch_size)
    engine.generate(None, engine.chat_ids(None, [{"role": "user", "content": "Hi"}]), Params(max_new_tokens=4))
    server = ServerThread(create_app(engine))
    url = server.url
    rows = [direct(engine, prompts, args.max_new_tokens)]
    rows += [served(url, prompts, args.max_new_tokens, int(n)) for n in args.clients.split(",")]
    server.stop()
    lines = [json.dumps({**r, "ttft_s": [round(t, 4) for t in r["ttft_s"]]}) for r in rows]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"\n{args.model}, {args.requests} requests, {args.max_new_tokens} new tokens each, greedy\n")
    one = next((r["tokens_per_s"] for r in rows if r["mode"] == "server" and r["clients"] == 1), None)
    print("| mode | clients | tokens/s | x 1 client | time to first token (median) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['tokens_per_s'] / one:.2f}" if one else ""
        ttft = statistics.median(r["ttft_s"])
        print(f"| {r['mode']} | {r['clients']} | {r['tokens_per_s']:.1f} | {ratio} | {ttft:.3f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
