"""Article-extraction benchmark: kinject's ``extract_main_text`` on 181 real pages with hand-checked bodies.

Usage: ``python bench/extraction.py [DATA_DIR] [--compare-plain] [--worst N]``

DATA_DIR defaults to ``../shared/benchmarks/article-extraction`` beside the repository (``html/<id>.html.gz`` and
``ground-truth.json``, from Scrapinghub/Zyte's article-extraction-benchmark). Scoring follows that benchmark, so the
figures compare with its published table (trafilatura 2.0.0: F1 0.958): word tokens, 4-word shingles, true positives
= multiset overlap; precision averaged over pages with a prediction, recall over pages with a truth, F1 of the two
means; accuracy = share of pages whose token lists match exactly. An empty prediction counts (recall 0).

Prints one JSON line per extractor (kinject's first), then a markdown table and kinject's worst pages by F1.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

from kinject.sources.extract import decode_bytes, extract_main_text  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "benchmarks" / "article-extraction"
_TOKEN = re.compile(r"\w+", re.UNICODE)
SHINGLE = 4


@dataclass
class Page:
    id: str
    url: str
    html: str
    truth: str


@dataclass
class PageScore:
    id: str
    tp: int
    fp: int
    fn: int
    exact: bool

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float:
        p, r = self.precision or 0.0, self.recall or 0.0
        if self.tp + self.fp + self.fn == 0:
            return 1.0
        return 2 * p * r / (p + r) if p + r else 0.0


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text or "")


def shingles(tokens: list[str], n: int = SHINGLE) -> Counter[tuple[str, ...]]:
    """All n-token shingles; a text shorter than n is one shorter shingle (none if empty), as the benchmark does."""
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])


def score_page(page_id: str, truth: str, prediction: str) -> PageScore:
    true_tokens, pred_tokens = tokenize(truth), tokenize(prediction)
    true_sh, pred_sh = shingles(true_tokens), shingles(pred_tokens)
    tp = sum((true_sh & pred_sh).values())
    return PageScore(
        page_id,
        tp=tp,
        fp=sum(pred_sh.values()) - tp,
        fn=sum(true_sh.values()) - tp,
        exact=true_tokens == pred_tokens,
    )


def summarize(scores: list[PageScore]) -> dict[str, float]:
    """Mean precision (pages with a prediction), mean recall (pages with a truth), F1 of the means, accuracy."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    both_empty = [s for s in scores if s.tp + s.fp + s.fn == 0]  # score 1 on both
    precision = mean([s.precision for s in scores if s.precision is not None] + [1.0] * len(both_empty))
    recall = mean([s.recall for s in scores if s.recall is not None] + [1.0] * len(both_empty))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = mean([1.0 if s.exact else 0.0 for s in scores])
    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": accuracy}


def load_pages(data_dir: Path) -> list[Page]:
    truth = json.loads((data_dir / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for page_id, item in sorted(truth.items()):
        raw = gzip.decompress((data_dir / "html" / f"{page_id}.html.gz").read_bytes())
        pages.append(Page(page_id, item.get("url", ""), decode_bytes(raw), item.get("articleBody", "")))
    return pages


def run(name: str, extract: Callable[[Page], str], pages: list[Page]) -> tuple[dict, list[PageScore]]:
    start = time.perf_counter()
    scores = [score_page(p.id, p.truth, extract(p) or "") for p in pages]
    seconds = time.perf_counter() - start
    result = {"extractor": name, **{k: round(v, 4) for k, v in summarize(scores).items()}}
    result.update(pages=len(pages), seconds=round(seconds, 1))
    return result, scores


def kinject_extract(page: Page) -> str:
    return extract_main_text(page.html, page.url)[1]


def plain_trafilatura(page: Page) -> str:
    import trafilatura

    return trafilatura.extract(page.html, url=page.url) or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA, help="benchmark folder")
    parser.add_argument("--compare-plain", action="store_true", help="also score trafilatura.extract defaults")
    parser.add_argument("--worst", type=int, default=10, help="how many of kinject's worst pages to list")
    args = parser.parse_args(argv)
    if not (args.data_dir / "ground-truth.json").is_file():
        parser.error(f"{args.data_dir} has no ground-truth.json")

    pages = load_pages(args.data_dir)
    extractors: list[tuple[str, Callable[[Page], str]]] = [("kinject", kinject_extract)]
    if args.compare_plain:
        extractors.append(("trafilatura-defaults", plain_trafilatura))
    results, kinject_scores = [], []
    for name, extract in extractors:
        result, scores = run(name, extract, pages)
        print(json.dumps(result), flush=True)
        results.append(result)
        if name == "kinject":
            kinject_scores = scores

    print("\n| extractor | F1 | precision | recall | accuracy | pages | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        cells = [r["extractor"], *(f"{r[k]:.3f}" for k in ("f1", "precision", "recall", "accuracy"))]
        print("| " + " | ".join([*cells, str(r["pages"]), f"{r['seconds']:.1f}"]) + " |")

    urls = {p.id: p.url for p in pages}
    print(f"\nWorst {args.worst} pages for kinject by F1:\n")
    print("| F1 | precision | recall | page |")
    print("|---|---|---|---|")
    for s in sorted(kinject_scores, key=lambda s: s.f1)[: args.worst]:
        p = "-" if s.precision is None else f"{s.precision:.2f}"
        r = "-" if s.recall is None else f"{s.recall:.2f}"
        print(f"| {s.f1:.2f} | {p} | {r} | {urls[s.id] or s.id} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
