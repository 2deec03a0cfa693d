// The CUDA executor's entry points in a build without CUDA.
#include "device/exec.hpp"

namespace trainer::device {

bool cuda_built() { return false; }

std::unique_ptr<exec> make_cuda_exec(int) {
  throw device_error(
      "this psap-train was built without CUDA; install the CUDA toolkit (/usr/local/cuda) and reconfigure with "
      "-DPSAP_ENABLE_CUDA=ON, or use --device cpu");
}

}  // namespace trainer::device
