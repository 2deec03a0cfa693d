# psap_target_defaults(<target>): the flags psap applies to its *own* binaries
# (tests, benchmarks, examples). Never added to psap::psap's interface: users
# keep their own flags.
function(psap_target_defaults target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
    if(PSAP_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
    if(PSAP_NATIVE_ARCH)
      # GCC 12 tunes -march=native on Zen 4 as znver3, which costs Eigen's
      # sgemm ~25%; generic tuning keeps the ISA and recovers it.
      target_compile_options(${target} PRIVATE -march=native -mtune=generic)
    endif()
    if(PSAP_SANITIZE)
      target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
      target_link_options(${target} PRIVATE -fsanitize=address,undefined)
      # libstdc++'s precondition checks (operator[] bounds, std::clamp's lo <= hi,
      # ...): the errors ASan cannot see because they stay inside an allocation.
      target_compile_definitions(${target} PRIVATE _GLIBCXX_ASSERTIONS)
      if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
        # Instrumented loops cannot be vectorised, so clang reports every
        # `#pragma omp simd` as a failed transformation; that is expected here.
        target_compile_options(${target} PRIVATE -Wno-pass-failed)
      endif()
    endif()
  endif()
endfunction()

# psap_sanitized_unoptimised(<target>): in a sanitizer build (PSAP_SANITIZE),
# compile <target> without optimisation. Under ASan+UBSan the optimiser is
# most of the compile time (a docs program: 22 s at -O1, 8 s at -O0), while
# the library's unit tests run in seconds either way; the trainer's tests,
# which train networks, keep the build type's level.
function(psap_sanitized_unoptimised target)
  if(PSAP_SANITIZE)
    psap_unoptimised(${target})
  endif()
endfunction()

# psap_sanitized_unoptimised_sources(<file>...): the same for source files of
# the current directory. The trainer's glue (command line, subcommands,
# checkpoints, its non-training tests) is most of its ASan build at -O1
# (prune_command.cpp: 105 s, 34 s at -O0), while its tests' time is spent in
# the layers, which keep the build type's level.
function(psap_sanitized_unoptimised_sources)
  if(PSAP_SANITIZE AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS -O0)
  endif()
endfunction()

# psap_lightly_optimised(<target>...): in optimised builds without
# sanitizers, compile test code whose run time is seconds at any level at
# -O1. Its compile time is mostly the optimiser's (g++ on a Zen 3 EPYC:
# pruner_test.cpp 125 s at -O3, 69 s at -O1; errors_test.cpp 63 s, 42 s),
# and the code under test keeps the build type's level wherever it is
# compiled apart: the trainer's libraries, the registry, the CPU backend's
# test, the benchmarks. A precompiled header must be built at the level of
# the code that uses it (g++ 12 crashed in IPA compiling an -O2 file with an
# -O1 header), so a PCH owner and its users are lightly optimised together.
function(psap_lightly_optimised)
  if(PSAP_SANITIZE OR NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    return()
  endif()
  foreach(t IN LISTS ARGN)
    target_compile_options(${t} PRIVATE $<$<CONFIG:Release,RelWithDebInfo,MinSizeRel>:-O1>)
  endforeach()
endfunction()

# psap_unoptimised(<target>...): compile <target> without optimisation in
# every build. For code that only has to run, not to run fast, and exercises
# no numerics of its own: the docs' programs (their output is compared with
# the pages), the CUDA backend's host-side test (the kernels are psap::cuda's),
# the trainer's glue tests, the compile-fail cases and the header checks
# (only parsing and instantiation matter there). g++ on a Zen 3 EPYC: the
# CUDA backend's test 99 s at -O1, 53 s at -O0; a docs program 39 s at -O1,
# 28 s at -O0.
function(psap_unoptimised)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    foreach(t IN LISTS ARGN)
      target_compile_options(${t} PRIVATE -O0)
    endforeach()
  endif()
endfunction()

# psap_shared_pch(<target> <owner>): compile <target> with <psap/psap.hpp>
# precompiled once, in <owner> (the first target of a set that shares its
# flags; pass <owner> == <target> for it). Every test and docs program pays
# for the library's headers (nlohmann/json, the policies, the pruner) before
# its own code: ~10 s of clang's front end per translation unit, 8 of the 32 s
# a docs program takes under ASan. A target's flags must match its owner's
# (clang refuses a precompiled header built with other macros or options),
# so the ISA variants of the backend test and the optimised docs program keep
# parsing the headers themselves. PSAP_PRECOMPILED_HEADERS=OFF turns it off.
function(psap_shared_pch target owner)
  if(NOT PSAP_PRECOMPILED_HEADERS)
    return()
  endif()
  if(target STREQUAL owner)
    target_precompile_headers(${target} PRIVATE <psap/psap.hpp>)
  else()
    target_precompile_headers(${target} REUSE_FROM ${owner})
  endif()
endfunction()
