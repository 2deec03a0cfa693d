#include "device/device_model.hpp"

#include <stdexcept>

namespace trainer::device {
namespace {

// -1: cpu, -2: emulated, N >= 0: cuda:N.
int parse(const std::string& d) {
  if (d == "cpu") return -1;
  if (d == "emulated") return -2;
  if (d == "cuda") return 0;
  if (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() < 9 &&
      d.find_first_not_of("0123456789", 5) == std::string::npos)
    return std::stoi(d.substr(5));
  throw std::invalid_argument("unknown device '" + d + "': use cpu, cuda, cuda:N (N = 0, 1, ...) or emulated");
}

}  // namespace

void check_device_name(const std::string& device) { (void)parse(device); }

std::unique_ptr<model> place_on(std::unique_ptr<model> m, const std::string& device) {
  const int d = parse(device);
  if (d == -1) return m;
  auto x = d == -2 ? make_host_exec() : make_cuda_exec(d);
  return std::make_unique<device_model>(std::move(m), std::move(x));
}

}  // namespace trainer::device
