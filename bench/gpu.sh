#!/usr/bin/env bash
# One prepared run of kinject's GPU checks and benchmarks on a lent GPU machine, within 8 minutes.
#
#   bench/gpu.sh wheels        # here, with network access to the package registries: fill .whl/ (git-ignored)
#                              # with what the GPU image lacks: bitsandbytes slimmed to its CUDA 13 and CPU
#                              # libraries (43 MB -> under 4 MB), datasets and its small dependencies, the
#                              # bundled tokenizer's files and the sample pages' text (no gguf or trafilatura there)
#   bench/gpu.sh run OUT       # there (carry .whl): install the wheels, then run, each stage in its own limit:
#                              #   cuda_check.json        the CUDA path's checks (4-bit QLoRA, masking, stop/resume,
#                              #                          out-of-memory, merge)
#                              #   train_throughput.*     kinject against the case-study recipe, random-weight
#                              #                          Llama-2-7b and 13b shapes cut to 2 and 4 layers, 4-bit,
#                              #                          block 2048, with the linear estimate at full depth
#
# Back come two files: OUT/summary.md (the card, the versions, each stage's exit code and the tables) and
# OUT/gpu-results.tgz (every JSON line and log).
# The image has torch (CUDA), transformers, peft, accelerate, pyarrow and huggingface_hub; nothing there reaches the
# Hub, so every model is built from a config with random weights. Each stage has its own time limit, so one that
# hangs leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."

BNB=bitsandbytes==0.50.2
EXTRA=(datasets==5.2.0 dill==0.4.0 multiprocess==0.70.18 xxhash==3.6.0 fsspec==2025.10.0)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

wheels() {
  mkdir -p .whl && rm -f .whl/*.whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "$BNB" "${EXTRA[@]}" || return 1
  local wheel tmp
  wheel=$(ls .whl/bitsandbytes-*.whl) && tmp=$(mktemp -d)
  (cd "$tmp" && python3 -m zipfile -e "$OLDPWD/$wheel" . \
     && find . -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cuda130.so' ! -name 'libbitsandbytes_cpu.so' -delete \
     && rm "$OLDPWD/$wheel" \
     && python3 - "$OLDPWD/$wheel" <<'EOF'
import base64, hashlib, pathlib, sys, zipfile
# rewrite RECORD for the files kept, then zip the wheel again
root = pathlib.Path(".")
record = next(root.glob("*.dist-info/RECORD"))
lines = []
for path in sorted(p for p in root.rglob("*") if p.is_file() and p != record):
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    lines.append(f"{path.as_posix()},sha256={digest},{len(data)}")
lines.append(f"{record.as_posix()},,")
record.write_text("\n".join(lines) + "\n")
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        z.write(path, path.as_posix())
EOF
  )
  rm -rf "$tmp"
  # the GPU image cannot convert the bundled model (no gguf there) nor extract pages (no trafilatura): carry the
  # bundled tokenizer's files and the sample pages' text
  .venv/bin/python bench/gpu_carry.py .whl
  du -sh .whl
}

run() {
  local out=${1:?usage: bench/gpu.sh run OUT} work
  work="$out/work"  # everything lands here, then goes back as one archive (the tool returns at most 8 files)
  mkdir -p "$work"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, transformers, peft, bitsandbytes as b; print(torch.__version__, transformers.__version__, peft.__version__, b.__version__)"
  } 2>&1 | tee "$out/summary.md"
  timeout 120 python3 bench/cuda_check.py --require-cuda --tokenizer .whl/tokenizer --out "$work/cuda_check.json" \
    > "$work/cuda_check.log" 2>&1
  echo "cuda_check: exit $?" | tee -a "$out/summary.md"
  for shape in llama-2-7b llama-2-13b; do
    timeout 170 python3 bench/train_throughput.py --shape "$shape" --layers 2,4 --steps 8 --repeats 1 \
      --tokenizer .whl/tokenizer --corpus .whl/corpus.txt --out "$work/$shape" > "$work/train_$shape.log" 2>&1
    echo "train_throughput $shape: exit $?" | tee -a "$out/summary.md"
    cat "$work/$shape/train_throughput.md" >> "$out/summary.md" 2>/dev/null
  done
  tar -czf "$out/gpu-results.tgz" -C "$work" . && rm -rf "$work"
}

case "${1:-}" in
  wheels) wheels ;;
  run) shift; run "$@" ;;
  *) echo "usage: bench/gpu.sh wheels | bench/gpu.sh run OUT" >&2; exit 2 ;;
esac
