#!/bin/sh
# Build llama.cpp (CPU only) from the source that PyPI's llama-cpp-python sdist ships in
# vendor/llama.cpp, into build/llamacpp/ (cached: a second run with the same pin does nothing).
#   sh scripts/build-llamacpp.sh            -> build/llamacpp/bin/{llama-server,llama-bench,llama-cli,...}
#                                              build/llamacpp/lib/libllama.so, include/llama.h
# Used by `make llamacpp` (the interop check and the serving benchmark read the binaries).
# Environment: LLAMACPP_PY_VERSION (the sdist pin), JOBS (default 2).
set -eu
PIN=${LLAMACPP_PY_VERSION:-0.3.36}
JOBS=${JOBS:-2}
OUT=${LLAMACPP_DIR:-build/llamacpp}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP="$OUT/.built-$PIN"
if [ -f "$STAMP" ] && [ -x "$OUT/bin/llama-server" ] && [ -f "$OUT/lib/libllama.so" ] && [ -f "$OUT/lib/libllama-server-impl.so" ]; then
  echo "llama.cpp from llama-cpp-python $PIN: cached in $OUT"; exit 0
fi
SRC="$OUT/src"
if [ ! -f "$SRC/llama_cpp_python-$PIN/vendor/llama.cpp/CMakeLists.txt" ]; then
  mkdir -p "$OUT/dl" "$SRC"
  if [ ! -f "$OUT/dl/llama_cpp_python-$PIN.tar.gz" ]; then
    python3 -m pip download --no-binary :all: --no-deps "llama-cpp-python==$PIN" -d "$OUT/dl"
  fi
  tar xzf "$OUT/dl/llama_cpp_python-$PIN.tar.gz" -C "$SRC" "llama_cpp_python-$PIN/vendor/llama.cpp"
fi
LL="$SRC/llama_cpp_python-$PIN/vendor/llama.cpp"
# CPU only, no network at build time (no prebuilt web UI, no curl/openssl), shared libllama so
# small programs can link against it; the tools get an rpath to lib/.
cmake -S "$LL" -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
  -DCMAKE_INSTALL_PREFIX="$OUT" -DCMAKE_INSTALL_RPATH="$OUT/lib" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON >"$OUT/cmake.log"
cmake --build "$OUT/cmake" -j "$JOBS" --target llama-server llama-bench llama-cli llama-completion llama-perplexity llama-tokenize
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/include"
for t in llama-server llama-bench llama-cli llama-completion llama-perplexity llama-tokenize; do
  [ -f "$OUT/cmake/bin/$t" ] && cp "$OUT/cmake/bin/$t" "$OUT/bin/"
done
# every shared library the build made (libllama, libggml*, and the tools' lib<tool>-impl.so)
find "$OUT/cmake/bin" -maxdepth 1 -name 'lib*.so*' -exec cp -P {} "$OUT/lib/" \;
for t in "$OUT"/bin/*; do   # fail here, not later, if a tool misses a library
  if ldd "$t" | grep -q 'not found'; then echo "build-llamacpp: $t: $(ldd "$t" | grep 'not found')" >&2; exit 1; fi
done
cp "$LL/include/llama.h" "$LL/ggml/include/"*.h "$OUT/include/"
touch "$STAMP"
echo "llama.cpp from llama-cpp-python $PIN: built in $OUT"
