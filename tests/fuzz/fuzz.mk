# tests/fuzz/fuzz.mk — the fuzzers (included by the Makefile).
#   make fuzz                  every target for FUZZ_TIME seconds (default 60) with clang
#                              -fsanitize=fuzzer,address,undefined; FUZZ_TARGETS="gguf data" picks
#   make fuzz-replay           (run by `make asan`) every committed crash case and seed as a
#                              plain input, with the C compiler and ASan+UBSan, no clang needed
# Targets: tests/fuzz/fuzz_<target>.c; seeds: tests/fuzz/corpus/<target>/ (committed, small,
# tests/fuzz/make_seeds.py) plus real files gathered by tests/fuzz/seeds.sh into
# build/fuzz/seeds/<target>/; regression inputs: tests/fuzz/regress/<target>/ (every crash a
# fuzzer ever found, and the issue-12 cases). New inputs go to build/fuzz/corpus/<target>/,
# findings to build/fuzz/crash-<target>-*; each run's libFuzzer output to build/fuzz/<target>.log.
# fuzz_http.c drives the HTTP layer of `peftlua serve` over a real socket.
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_DEFS    := -DPL_FUZZ_ROOT='"$(abspath .)"' -Itests/fuzz
FUZZ_OPTS    ?= -timeout=25 -rss_limit_mb=2560 -max_len=262144 -print_final_stats=1
FUZZ_HDRS    := $(wildcard tests/fuzz/*.h)

.PHONY: fuzz fuzz-build fuzz-seeds fuzz-replay
fuzz-build:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN) -gline-tables-only -Wno-pass-failed" $(FUZZ_BUILD)/libpeftlua.a
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HDRS) $(wildcard $(FUZZ_BUILD)/libpeftlua.a)
	$(FUZZ_CC) -std=c11 -O1 -g -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) $(FUZZ_DEFS) -fsanitize=fuzzer $(FUZZ_SAN) \
	  -o $@ $< $(FUZZ_BUILD)/libpeftlua.a $(LDLIBS)

fuzz-seeds: fuzz-build
	@sh tests/fuzz/seeds.sh $(FUZZ_BUILD)

fuzz: fuzz-seeds
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  dirs=""; for d in tests/fuzz/corpus/$$t tests/fuzz/regress/$$t $(FUZZ_BUILD)/seeds/$$t; do [ -d $$d ] && dirs="$$dirs $$d"; done; \
	  echo "== fuzz $$t ($(FUZZ_TIME) s)"; \
	  OMP_NUM_THREADS=1 PEFTLUA_ROOT=$(abspath .) $(FUZZ_BUILD)/fuzz_$$t $(FUZZ_OPTS) -max_total_time=$(FUZZ_TIME) \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- $(FUZZ_BUILD)/corpus/$$t $$dirs > $(FUZZ_BUILD)/$$t.log 2>&1 || fail=1; \
	  grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' $(FUZZ_BUILD)/$$t.log | tr '\n' ' '; echo; \
	  grep -E '^==[0-9]+==ERROR|runtime error|SUMMARY|^artifact_prefix|Test unit written' $(FUZZ_BUILD)/$$t.log; \
	done; exit $$fail

# Replay with the build this make runs in (`make asan` passes BUILD=build/asan and its flags).
FUZZ_REPLAY := $(FUZZ_TARGETS:%=$(BUILD)/fuzz-replay/fuzz_%)
$(BUILD)/fuzz-replay/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(FUZZ_HDRS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUZZ_DEFS) $(LDFLAGS) -o $@ $< tests/fuzz/replay_main.c $(LIB) $(LDLIBS)
fuzz-replay: $(FUZZ_REPLAY)
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  OMP_NUM_THREADS=1 PEFTLUA_ROOT=$(abspath .) $(BUILD)/fuzz-replay/fuzz_$$t tests/fuzz/regress/$$t tests/fuzz/corpus/$$t || fail=1; \
	done; exit $$fail
