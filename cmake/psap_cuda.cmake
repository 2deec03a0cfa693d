# Enables the CUDA backend (target psap::cuda, src/cuda/) when a toolkit is
# found; sets PSAP_HAS_CUDA. Included from the top-level CMakeLists.txt (same
# scope). Without a toolkit the CUDA parts are skipped with a message and
# everything else builds and tests as usual.
include(CheckLanguage)
if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)   # A100, H100/H200
  endif()
  # nvcc's host compiler: the C++ compiler of the rest of the build (same ABI).
  if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit)
  if(CUDAToolkit_FOUND)
    set(PSAP_HAS_CUDA ON)
    message(STATUS "psap: CUDA backend enabled (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES})")
  else()
    message(STATUS "psap: nvcc found but not the CUDA toolkit's libraries (CUDAToolkit); the CUDA backend is not built")
  endif()
else()
  message(STATUS "psap: no CUDA compiler found; the CUDA backend (psap::cuda), its tests and benchmarks are not built")
endif()
