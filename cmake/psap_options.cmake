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
# the library's unit tests and the docs' programs run in seconds either way;
# the trainer's tests, which train networks, keep the build type's level.
function(psap_sanitized_unoptimised target)
  if(PSAP_SANITIZE AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -O0)
  endif()
endfunction()
