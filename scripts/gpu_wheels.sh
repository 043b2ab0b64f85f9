#!/usr/bin/env bash
# Prepares gpu_kit/ (git-ignored) for scripts/gpu_check.sh on a GPU machine that has no network:
#   gpu_kit/wheels/    wheels that machine's python lacks, for PY_VERSION on x86-64 Linux
#   gpu_kit/tiktoken/  gpt2's tiktoken vocabulary (a TIKTOKEN_CACHE_DIR)
#   gpu_kit/corpus/    a few of the shared corpora's parquet shards (sotu, code, udhr: about 5.5 MB)
# Run it where pip can reach PyPI and ../shared (or TOKLAB_SHARED_DIR) exists, then copy the
# checkout with gpu_kit/ to the GPU machine.
#
# What is shipped, and why: the GPU image already has torch (CUDA), tokenizers, tiktoken,
# sentencepiece, pandas, pyarrow, rich, typer and matplotlib. Of toklab's other dependencies the
# kit's stages import none (checked by running the dry run with them blocked): py7zr (7z rows of
# `compare`), datasets (hub corpora) and gflanguages (building the embedded default corpus) are
# imported only by commands the kit does not run. zstandard is shipped anyway: any .jsonl corpus
# given with --corpus needs it, and it is small. hatchling, trove-classifiers, tomlkit and editables
# (hatchling needs it for this project: the wheel force-includes corpora/) let
# `pip install --no-build-isolation -e .` build toklab offline.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION=${PY_VERSION:-3.12}   # the GPU machine's python (3.12.3 when last seen)
PYTHON=${PYTHON:-python3}        # the python whose pip downloads here
SHARED=${TOKLAB_SHARED_DIR:-../shared}
VOCAB=${GPT2_VOCAB_DIR:-$SHARED/tiktoken}
KIT=gpu_kit
MAX_MIB=60
PACKAGES=("zstandard>=0.22" "hatchling>=1.18" "trove-classifiers" "tomlkit" "editables")
# tiktoken's cache names files by the sha1 of their URL: gpt2's vocab.bpe and encoder.json
GPT2_FILES=(6d1cbeee0f20b3d9449abfede4726ed8212e3aee 6c7ea1a7e38e3a7f062df639a5b80947f075ffe6)
CORPORA=(sotu code udhr)

fail() { echo "error: $*" >&2; exit 2; }
[ -d "$VOCAB" ] || fail "no tiktoken vocabularies at $VOCAB (set TOKLAB_SHARED_DIR or GPT2_VOCAB_DIR)"
[ -d "$SHARED/corpora" ] || fail "no shared corpora at $SHARED/corpora (set TOKLAB_SHARED_DIR)"

rm -rf "$KIT/wheels" "$KIT/tiktoken" "$KIT/corpus"
mkdir -p "$KIT/wheels" "$KIT/tiktoken" "$KIT/corpus"

echo "wheels for CPython $PY_VERSION, manylinux x86-64: ${PACKAGES[*]}"
# --no-deps: the image has every other dependency of these (packaging, pathspec, pluggy)
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$KIT/wheels" "${PACKAGES[@]}" \
    || fail "pip download failed (is PyPI reachable from here?)"

for f in "${GPT2_FILES[@]}"; do
    [ -f "$VOCAB/$f" ] || fail "gpt2's vocabulary file $f is not in $VOCAB"
    cp "$VOCAB/$f" "$KIT/tiktoken/"
done

for c in "${CORPORA[@]}"; do
    [ -d "$SHARED/corpora/$c" ] || fail "no $SHARED/corpora/$c"
    mkdir -p "$KIT/corpus/$c"
    cp "$SHARED/corpora/$c"/*.parquet "$KIT/corpus/$c/"
done

{
    echo "gpu_kit prepared $(date -u +%Y-%m-%dT%H:%M:%SZ) for CPython $PY_VERSION by scripts/gpu_wheels.sh"
    echo "wheels:"; (cd "$KIT/wheels" && ls -1 *.whl | sed 's/^/  /')
    echo "tiktoken: gpt2 (vocab.bpe, encoder.json)"
    echo "corpus: ${CORPORA[*]} from $SHARED/corpora"
} > "$KIT/MANIFEST.txt"

size=$(du -sm "$KIT" | cut -f1)
[ "$size" -le "$MAX_MIB" ] || fail "$KIT is $size MiB, over the $MAX_MIB MiB it may take"
cat "$KIT/MANIFEST.txt"
echo "$KIT: $size MiB"
