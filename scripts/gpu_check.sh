#!/usr/bin/env bash
# The CUDA backend's GPU check, in one go (docs/cuda.md).
#
#   scripts/gpu_check.sh --prepare
#       Here, on a build machine without a GPU: bundles into build-gpu/
#       (ignored by git) what the GPU machine may lack, since nothing can be
#       fetched there: the header-only dependencies (Eigen, nlohmann-json,
#       doctest with their CMake package files), portable prebuilt test and
#       benchmark binaries (sm_80 + sm_90, no -march=native, no OpenMP, static
#       libstdc++) and the CUDA runtime they were linked with.
#
#   scripts/gpu_check.sh [--build] [--no-sanitizer] [--no-trainer]
#       On the GPU machine: prints the machine (nvidia-smi, device, toolkit),
#       then runs the CUDA tests (CTest label "cuda", then the device suite
#       with timings), compute-sanitizer (memcheck, racecheck) on the kernel
#       tests, and the step benchmark (GPU and CPU reference); then builds the
#       trainer's device engine there, runs its test against the CPU layers
#       and times training/inference against PyTorch on the same GPU. It uses the
#       prebuilt binaries of build-gpu/bin when they start there, and builds
#       from source otherwise (or with --build): Release, CUDA on, sm_90,
#       build-gpu/deps on CMAKE_PREFIX_PATH. Logs go to $OUT (or build-gpu/logs).
#       Exit status: 0 when every check passed.
#
#   With the device tool:  run(command="bash scripts/gpu_check.sh", carry=["build-gpu"], timeout_s=560)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=$root/build-gpu

log() { printf '\n== %s\n' "$*"; }

find_nvcc() {
  if command -v nvcc >/dev/null 2>&1; then command -v nvcc
  elif [[ -x /usr/local/cuda/bin/nvcc ]]; then echo /usr/local/cuda/bin/nvcc
  fi
}

# ----------------------------------------------------------------------------- prepare
if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  nvcc=$(find_nvcc)
  [[ -n "$nvcc" ]] || { echo "gpu_check --prepare: no nvcc found"; exit 1; }
  rm -rf "$bundle" && mkdir -p "$bundle"/{bin,lib,deps/include,deps/share/cmake,deps/share/eigen3,deps/lib/cmake}
  log "bundling header-only dependencies into build-gpu/deps"
  cp -rL /usr/include/eigen3 "$bundle/deps/include/"
  cp -rL /usr/share/eigen3/cmake "$bundle/deps/share/eigen3/"
  cp -rL /usr/include/nlohmann "$bundle/deps/include/"
  cp -rL /usr/share/cmake/nlohmann_json "$bundle/deps/share/cmake/"
  cp -rL /usr/include/doctest "$bundle/deps/include/"
  cp -rL /usr/lib/cmake/doctest "$bundle/deps/lib/cmake/"
  log "building portable binaries in build-gpu-portable/"
  cmake -S . -B build-gpu-portable -G Ninja -DCMAKE_BUILD_TYPE=Release -DPSAP_BUILD_EXAMPLES=OFF \
        -DPSAP_BUILD_TESTS=ON -DPSAP_BUILD_BENCHMARKS=ON -DPSAP_ENABLE_CUDA=ON -DPSAP_NATIVE_ARCH=OFF \
        -DPSAP_USE_OPENMP=OFF -DPSAP_WERROR=ON -DCMAKE_CUDA_ARCHITECTURES="80;90" \
        "-DCMAKE_EXE_LINKER_FLAGS=-static-libstdc++ -static-libgcc" >/dev/null
  cmake --build build-gpu-portable -j "$(nproc)" --target psap_test_cuda_backend psap_test_cuda_kernels psap_cuda_step_benchmark
  cp build-gpu-portable/tests/backend_cuda/psap_test_cuda_backend build-gpu-portable/tests/backend_cuda/psap_test_cuda_kernels \
     build-gpu-portable/benchmarks/psap_cuda_step_benchmark "$bundle/bin/"
  cudart=$(ldd "$bundle/bin/psap_test_cuda_backend" | awk '/libcudart/ {print $3}')
  [[ -n "$cudart" ]] && cp -L "$cudart" "$bundle/lib/"
  git rev-parse HEAD >"$bundle/commit" 2>/dev/null || true
  git status --short -- include src tests/backend tests/backend_cuda benchmarks >"$bundle/dirty" 2>/dev/null || true
  du -sh "$bundle"
  echo "gpu_check --prepare: done; carry build-gpu to the GPU machine"
  exit 0
fi

# ----------------------------------------------------------------------------- check
force_build=0 sanitizer=1 trainer=1
for a in "$@"; do
  case "$a" in
    --build) force_build=1 ;;
    --no-trainer) trainer=0 ;;
    --no-sanitizer) sanitizer=0 ;;
    *) echo "gpu_check: unknown option $a"; exit 2 ;;
  esac
done
logs=${OUT:-$bundle/logs}
mkdir -p "$logs"
exec > >(tee "$logs/gpu_check.log") 2>&1
declare -a results=()
record() {  # record NAME STATUS
  results+=("$(printf '%-34s %s' "$1" "$([[ $2 -eq 0 ]] && echo passed || ([[ $2 -eq 77 ]] && echo SKIPPED || echo "FAILED ($2)"))")")
}

log "machine"
date -u
uname -a
nvidia-smi || echo "nvidia-smi: not available"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,compute_cap --format=csv 2>/dev/null || true
nvcc=$(find_nvcc)
[[ -n "$nvcc" ]] && "$nvcc" --version | tail -2
cmake --version 2>/dev/null | head -1
c++ --version 2>/dev/null | head -1
echo "repository: $(git rev-parse --short HEAD 2>/dev/null || echo '?'); bundle built from: $(cat "$bundle/commit" 2>/dev/null || echo 'no bundle')"
[[ -s "$bundle/dirty" ]] && { echo "bundle built with uncommitted changes in:"; cat "$bundle/dirty"; }

# The CUDA runtime: the bundled one first (the binaries were linked with it), then the toolkit's.
cuda_lib=""
[[ -n "$nvcc" ]] && cuda_lib="$(dirname "$(dirname "$(readlink -f "$nvcc")")")/lib64"
export LD_LIBRARY_PATH="$bundle/lib:${cuda_lib}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Binaries: prebuilt when they start here, else built from source.
bin=""
if [[ $force_build -eq 0 && -x "$bundle/bin/psap_test_cuda_kernels" ]]; then
  if "$bundle/bin/psap_test_cuda_kernels" >/dev/null 2>&1 && "$bundle/bin/psap_test_cuda_backend" --psap-host-only -tc="device adapters*" >/dev/null 2>&1; then
    bin=$bundle/bin
    log "using the prebuilt binaries of build-gpu/bin"
  else
    log "the prebuilt binaries do not start here; building from source"
  fi
fi
test_backend="" test_kernels="" benchmark=""
if [[ -n "$bin" ]]; then
  test_backend=$bin/psap_test_cuda_backend test_kernels=$bin/psap_test_cuda_kernels benchmark=$bin/psap_cuda_step_benchmark
else
  build=$root/build-gpu-check
  prefix=""
  [[ -d "$bundle/deps" ]] && prefix="-DCMAKE_PREFIX_PATH=$bundle/deps"
  cfg=(-S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPSAP_BUILD_EXAMPLES=OFF -DPSAP_BUILD_TESTS=ON
       -DPSAP_ENABLE_CUDA=ON -DPSAP_WERROR=OFF -DCMAKE_CUDA_ARCHITECTURES=90 ${prefix:+"$prefix"})
  [[ -n "$nvcc" ]] && cfg+=("-DCMAKE_CUDA_COMPILER=$nvcc")
  log "configure (Release, CUDA on, sm_90)"
  if ! cmake "${cfg[@]}" -DPSAP_BUILD_BENCHMARKS=ON; then
    echo "configure with the benchmarks failed; again without them (the benchmark is then compiled directly)"
    cmake "${cfg[@]}" -DPSAP_BUILD_BENCHMARKS=OFF || { record configure 1; printf '%s\n' "${results[@]}"; exit 1; }
  fi
  log "build"
  targets=(psap_test_cuda_backend psap_test_cuda_kernels)
  grep -q "psap_cuda_step_benchmark" "$build/build.ninja" && targets+=(psap_cuda_step_benchmark)
  time cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
  record build $?
  test_backend=$build/tests/backend_cuda/psap_test_cuda_backend test_kernels=$build/tests/backend_cuda/psap_test_cuda_kernels
  benchmark=$build/benchmarks/psap_cuda_step_benchmark
  if [[ ! -x "$benchmark" ]]; then
    benchmark=$build/psap_cuda_step_benchmark
    cuda_inc="$(dirname "$cuda_lib")/include"
    c++ -O3 -DNDEBUG -std=c++20 -Iinclude -isystem "$bundle/deps/include/eigen3" -isystem "$bundle/deps/include" -isystem /usr/include/eigen3 \
        -isystem "$cuda_inc" benchmarks/cuda_step_benchmark.cpp "$build/src/cuda/libpsap_cuda.a" -L"$cuda_lib" -lcudart -o "$benchmark"
    record "benchmark (direct compile)" $?
  fi
fi

log "CUDA tests: kernel bodies on the host (psap.cuda_kernels)"
"$test_kernels"
record psap.cuda_kernels $?

log "CUDA tests: host suite (psap.cuda_backend.host)"
"$test_backend" --psap-host-only
record psap.cuda_backend.host $?

log "CUDA tests: device suite (psap.cuda_backend), with per-test durations"
time "$test_backend" --duration=true
record psap.cuda_backend $?

if [[ -z "$bin" ]]; then
  log "CTest, label cuda"
  ctest --test-dir "$build" -L cuda --output-on-failure
  record "ctest -L cuda" $?
fi

if [[ $sanitizer -eq 1 ]]; then
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [[ -n "$cs" ]]; then
    log "compute-sanitizer memcheck: kernel tests"
    timeout 240 "$cs" --tool memcheck --error-exitcode 3 "$test_backend" --test-suite=cuda_device \
        -tc="*bit for bit*,*non-finite*,*device_buffer*,*user stream*,*lane order*"
    record "memcheck (kernel tests)" $?
    log "compute-sanitizer racecheck: row reductions"
    timeout 180 "$cs" --tool racecheck --error-exitcode 3 "$test_backend" --test-suite=cuda_device -tc="*row reductions*"
    record "racecheck (row reductions)" $?
  else
    echo "compute-sanitizer not found: skipped"
    record "compute-sanitizer" 77
  fi
fi

log "benchmark: one step per preset, observe/after_update per iteration (GPU, then CPU reference)"
time "$benchmark" --cpu 3 20
record psap_cuda_step_benchmark $?

# ----------------------------------------------------------------------------- trainer
# The reference trainer's device engine (examples/resnet_trainer/device):
# compiled here directly (no CMake: the trainer's CLI needs CLI11 and zlib,
# which this machine may lack), then its test against the CPU layers and
# training/inference throughput next to PyTorch on the same GPU.
if [[ $trainer -eq 1 && -z "$nvcc" ]]; then
  echo "trainer: no nvcc on this machine; the device engine cannot be built here"
  record "trainer build" 77
elif [[ $trainer -eq 1 ]]; then
  log "trainer: build the device engine, its test and the throughput benchmark"
  tb=$root/build-gpu-trainer
  mkdir -p "$tb"
  tr=examples/resnet_trainer
  inc=(-I"$tr" -isystem "$bundle/deps/include/eigen3" -isystem "$bundle/deps/include" -isystem /usr/include/eigen3)
  omp=-fopenmp
  echo 'int main(){}' | c++ -x c++ -fopenmp - -o "$tb/omp_probe" 2>/dev/null || omp=-Wno-unknown-pragmas
  srcs=($tr/nn/*.cpp $tr/models/*.cpp $tr/optim/*.cpp $tr/device/engine.cpp $tr/device/device_model.cpp $tr/device/host_exec.cpp)
  ok=0
  time {
    "$nvcc" -std=c++17 -O3 -arch=sm_90 -I"$tr" -c $tr/device/cuda_exec.cu -o "$tb/cuda_exec.o" || ok=1
    printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -I{} sh -c \
      'c++ -std=c++20 -O3 -DNDEBUG -march=native -mtune=generic '"$omp ${inc[*]}"' -c {} -o '"$tb"'/$(echo {} | tr / _).o' || ok=1
    for main in tests/device_test.cpp:trainer_device_test bench/trainer_throughput.cpp:psap_trainer_bench; do
      c++ -std=c++20 -O3 -DNDEBUG $omp "${inc[@]}" "$tr/${main%%:*}" "$tb"/*.o -L"$cuda_lib" -lcublas -lcudart \
          -o "$tb/${main##*:}" || ok=1
    done
  }
  record "trainer build" $ok
  if [[ $ok -eq 0 ]]; then
    log "trainer: device engine against the CPU layers (trainer_device_test --exec cuda)"
    time "$tb/trainer_device_test" --exec cuda
    record trainer_device.cuda $?
    log "trainer: throughput on the GPU, psap vs PyTorch (FP32, TF32 off), batch 128"
    for cfg in "resnet20 train" "resnet20 infer" "resnet56 train" "resnet56 infer"; do
      set -- $cfg
      for rep in 1 2; do
        "$tb/psap_trainer_bench" --device cuda --model "$1" --mode "$2" --batch 128 --warmup 5 --iters 30 --threads "$(nproc)"
        python3 $tr/scripts/torch_throughput.py --device cuda --model "$1" --mode "$2" --batch 128 --warmup 5 --iters 30 \
            --threads "$(nproc)" || echo "PyTorch on the GPU: not available"
      done
    done
    record "trainer throughput" 0
  fi
fi

log "summary"
printf '%s\n' "${results[@]}"
failed=0
for r in "${results[@]}"; do [[ "$r" == *FAILED* ]] && failed=1; done
exit $failed
