"""The Prometheus counters ``/metrics`` exposes, named as TGI names them (``tgi_request_count``,
``tgi_request_duration``, ``tgi_queue_size``, ...) so an operator's dashboards for TGI read kinject's server too.

Written in Prometheus' text format (0.0.4) by hand: a dozen series do not need a client library.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

from .engine import Generation

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{edge:g}"}} {n}' for edge, n in zip(self.buckets, self.counts, strict=True)]
        return [
            *out,
            f'{name}_bucket{{le="+Inf"}} {self.count}',
            f"{name}_sum {self.sum:g}",
            f"{name}_count {self.count}",
        ]


HELP = {
    "tgi_request_count": ("counter", "Generation requests received"),
    "tgi_request_success": ("counter", "Generation requests answered in full"),
    "tgi_request_failure": ("counter", "Generation requests refused or failed, by error type"),
    "tgi_request_cancelled": ("counter", "Generations stopped because the client went away (kinject's own)"),
    "tgi_queue_size": ("gauge", "Requests waiting for a place in a batch"),
    "tgi_batch_current_size": ("gauge", "Requests generating in a batch now"),
    "tgi_request_duration": ("histogram", "Seconds from a request's arrival to its last token"),
    "tgi_request_queue_duration": ("histogram", "Seconds a request waited for the model"),
    "tgi_request_inference_duration": ("histogram", "Seconds a request spent generating"),
    "tgi_request_mean_time_per_token_duration": ("histogram", "Seconds per generated token"),
    "tgi_request_input_length": ("histogram", "Prompt tokens per request"),
    "tgi_request_generated_tokens": ("histogram", "Tokens generated per request"),
}


class Metrics:
    """Thread-safe request counters and histograms; ``render`` writes them for a scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.success = 0
        self.cancelled = 0
        self.failures: dict[str, int] = defaultdict(int)
        self.hist = {
            "tgi_request_duration": _Histogram(SECONDS),
            "tgi_request_queue_duration": _Histogram(SECONDS),
            "tgi_request_inference_duration": _Histogram(SECONDS),
            "tgi_request_mean_time_per_token_duration": _Histogram(SECONDS),
            "tgi_request_input_length": _Histogram(TOKENS),
            "tgi_request_generated_tokens": _Histogram(TOKENS),
        }

    def received(self) -> None:
        with self._lock:
            self.requests += 1

    def failed(self, error_type: str) -> None:
        with self._lock:
            self.failures[error_type] += 1

    def finished(self, gens: list[Generation], duration_s: float) -> None:
        """A request answered: its generations (one per prompt) and its whole duration."""
        with self._lock:
            if any(g.finish_reason == "cancelled" for g in gens):
                self.cancelled += 1
                return
            self.success += 1
            h = self.hist
            h["tgi_request_duration"].observe(duration_s)
            for g in gens:
                h["tgi_request_queue_duration"].observe(g.queued_s)
                h["tgi_request_inference_duration"].observe(g.generate_s)
                if g.tokens:
                    h["tgi_request_mean_time_per_token_duration"].observe(g.generate_s / len(g.tokens))
                h["tgi_request_input_length"].observe(g.input_length)
                h["tgi_request_generated_tokens"].observe(len(g.tokens))

    def render(self, in_flight: Callable[[], int], running: Callable[[], int]) -> str:
        """Prometheus' text exposition format; ``in_flight``: requests queued or generating, ``running``: those
        generating in a batch."""
        with self._lock:
            batch = running()
            queued = max(in_flight() - batch, 0)
            values: dict[str, list[str]] = {
                "tgi_request_count": [f"tgi_request_count {self.requests}"],
                "tgi_request_success": [f"tgi_request_success {self.success}"],
                "tgi_request_failure": [
                    f'tgi_request_failure{{err="{k}"}} {v}' for k, v in sorted(self.failures.items())
                ],
                "tgi_request_cancelled": [f"tgi_request_cancelled {self.cancelled}"],
                "tgi_queue_size": [f"tgi_queue_size {queued}"],
                "tgi_batch_current_size": [f"tgi_batch_current_size {batch}"],
            }
            for name, hist in self.hist.items():
                values[name] = hist.lines(name)
        out = []
        for name, (kind, help_text) in HELP.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *values[name]]
        return "\n".join(out) + "\n"
