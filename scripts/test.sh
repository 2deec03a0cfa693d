#!/usr/bin/env bash
# Sets everything up and runs the whole test suite:
#   1. g++ Release build with -Werror, every test (CTest);
#   2. clang++ build with AddressSanitizer + UndefinedBehaviorSanitizer, every
#      test except the long-running ones (label "slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --python
export PATH="$PWD/.venv/bin:$PATH"   # python3 with safetensors/onnxruntime for interop tests
jobs=$(nproc)

start=$SECONDS
phases=""
mark() { phases="$phases $1 $((SECONDS - t0)) s,"; t0=$SECONDS; }   # each phase's time, for the summary
t0=$SECONDS
echo "== g++ $(g++ -dumpversion), Release, -Werror"
cmake -S . -B build/gcc -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ -DPSAP_WERROR=ON >/dev/null
cmake --build build/gcc -j "$jobs"
mark "g++ build"
ctest --test-dir build/gcc --output-on-failure -j "$jobs"
mark "g++ tests"

echo "== clang++ $(clang++ -dumpversion), ASan + UBSan"
# -O1 -g1: the level ASan recommends, and cheaper to compile than -O2 -g; the
# library's unit tests, the docs' programs and the trainer's glue (command
# line, checkpoints, non-training tests) drop to -O0 (psap_sanitized_unoptimised,
# psap_unoptimised).
# The headers' self-containment (~50 translation units, nothing to run) is
# checked by the g++ build; this one has every header inside its tests anyway.
cmake -S . -B build/clang-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DPSAP_WERROR=ON -DPSAP_SANITIZE=ON -DPSAP_CHECK_HEADERS=OFF -DPSAP_BUILD_BENCHMARKS=OFF -DPSAP_ENABLE_CUDA=OFF >/dev/null
cmake --build build/clang-asan -j "$jobs"
mark "clang++ build"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/clang-asan --output-on-failure -j "$jobs" -LE slow
mark "ASan tests"
echo "== all tests passed ($((SECONDS - start)) s:${phases%,})"
