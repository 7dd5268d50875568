#!/bin/sh
# tests/fuzz/seeds.sh BUILD — gathers the real files the fuzzers start from into
# BUILD/seeds/<target>/ (not committed: they come from ../shared and the test fixtures), and the
# checkpoint and tuner-history seeds their harnesses write (PL_FUZZ_MAKE_SEED).
set -e
B=${1:-build/fuzz}
S=$B/seeds
SH=../shared
rm -rf "$S"
mkdir -p "$S/gguf" "$S/safetensors" "$S/tokenizer_json" "$S/llama2c_model" "$S/llama2c_tokenizer" \
  "$S/data" "$S/chat" "$S/adapter" "$S/checkpoint" "$S/tune" "$S/hf_config" "$S/tokenize"
cp_if() { [ -f "$1" ] && cp "$1" "$2" || true; }
cp_if $SH/models/stories260K/stories260K.gguf "$S/gguf/"
cp_if models/SmolLM2-135M-Instruct.Q4_1.gguf /dev/null   # too large to fuzz whole; its header:
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] && head -c 262144 models/SmolLM2-135M-Instruct.Q4_1.gguf > "$S/gguf/smollm2_head.gguf" || true
cp_if $SH/models/stories260K/stories260K.bin "$S/llama2c_model/"
cp_if $SH/models/stories260K/tok512.bin "$S/llama2c_tokenizer/"
cp_if $SH/tokenizers/llama2/tokenizer.bin "$S/llama2c_tokenizer/llama2_tokenizer.bin"
cp_if tests/data/lora/peft_fixture/adapter_model.safetensors "$S/safetensors/peft_fixture.safetensors"
for t in tests/ref/tokenizer/*/tokenizer.json; do cp_if "$t" "$S/tokenizer_json/$(basename $(dirname $t)).json"; done
for f in tests/data/bad/*; do cp_if "$f" "$S/data/"; done
[ -f $SH/data/wikisql/valid.jsonl ] && head -n 12 $SH/data/wikisql/valid.jsonl > "$S/data/wikisql_head.jsonl" || true
[ -f $SH/data/chat-demo/dummy_conversation.messages.jsonl ] && head -n 4 $SH/data/chat-demo/dummy_conversation.messages.jsonl > "$S/data/chat_demo_head.jsonl" || true
[ -f $SH/data/alpaca-demo/alpaca_en_demo.json ] && python3 -c "import json,sys; json.dump(json.load(open(sys.argv[1]))[:4], sys.stdout)" $SH/data/alpaca-demo/alpaca_en_demo.json > "$S/data/alpaca_head.json" || true
[ -f $SH/data/text/tinystories_sample.txt ] && { printf '\011'; head -c 1500 $SH/data/text/tinystories_sample.txt; } > "$S/tokenize/tinystories" || true
[ -f $SH/data/wikisql/valid.jsonl ] && { printf '\004'; head -c 1500 $SH/data/wikisql/valid.jsonl; } > "$S/tokenize/wikisql" || true
# the PEFT-written adapter: config, split line, weights
if [ -f tests/data/lora/peft_fixture/adapter_config.json ]; then
  { cat tests/data/lora/peft_fixture/adapter_config.json; printf '\n--PEFTLUA-FUZZ-SPLIT--\n'; cat tests/data/lora/peft_fixture/adapter_model.safetensors; } > "$S/adapter/peft_fixture"
fi
# (these harnesses exit inside the target after writing the seed, which libFuzzer reports as a
# crash on the empty input: its artefact goes under $B, not into the working directory)
[ -x $B/fuzz_checkpoint ] && PEFTLUA_ROOT=$(pwd) PL_FUZZ_MAKE_SEED="$S/checkpoint" $B/fuzz_checkpoint -runs=1 -artifact_prefix="$B/seedmake-checkpoint-" >/dev/null 2>&1 || true
[ -x $B/fuzz_tune ] && PEFTLUA_ROOT=$(pwd) PL_FUZZ_MAKE_SEED="$S/tune" $B/fuzz_tune -runs=1 -artifact_prefix="$B/seedmake-tune-" >/dev/null 2>&1 || true
echo "fuzz seeds: $(find "$S" -type f | wc -l) files in $S"
