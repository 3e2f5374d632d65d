"""What ``bench/gpu.sh wheels`` carries to a GPU machine beside the wheels: the bundled model's tokenizer files (the
image cannot convert the bundled model: no gguf there) and the sample pages' article text (no trafilatura there).

    python bench/gpu_carry.py .whl     # writes .whl/tokenizer/ and .whl/corpus.txt
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(folder: str) -> int:
    from train_throughput import corpus_text

    from kinject.models.loading import ensure_bundled_model

    out = Path(folder)
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    for f in ensure_bundled_model().iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template", "added_tokens")):
            shutil.copy(f, out / "tokenizer" / f.name)
    (out / "corpus.txt").write_text(corpus_text(None), encoding="utf-8")
    print(f"carried: {', '.join(sorted(p.name for p in (out / 'tokenizer').iterdir()))}, corpus.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else ".whl"))
