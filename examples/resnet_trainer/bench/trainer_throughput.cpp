// Training / inference throughput of the reference trainer on synthetic data.
// One run: warm-up iterations, then timed iterations; prints one JSON line.
// scripts/bench_throughput.py runs this and the PyTorch equivalent interleaved.
// With --checkpoint FILE the network is the one of a psap-train checkpoint
// (its model_config and weights; input shape from the model), which is how
// scripts/bench_compaction.py times a masked network against its compact one.
// --device cuda (or emulated) runs forward and backward on the device engine;
// the optimizer step stays on the host, as in psap-train.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef PSAP_BENCH_CHECKPOINTS
#include "cli/checkpoint.hpp"
#endif
#include "device/device_model.hpp"
#include "models/resnet.hpp"
#include "models/vgg.hpp"
#include "nn/cross_entropy.hpp"
#include "nn/parallel.hpp"
#include "nn/rng.hpp"
#include "optim/sgd.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

struct args {
  std::string model = "resnet20", mode = "train", checkpoint, device = "cpu";
  int channels = 3, size = 32, batch = 128, threads = 2, warmup = 3, iters = 10;
};

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") a.model = v;
    else if (k == "--mode") a.mode = v;
    else if (k == "--channels") a.channels = std::stoi(v);
    else if (k == "--size") a.size = std::stoi(v);
    else if (k == "--batch") a.batch = std::stoi(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--warmup") a.warmup = std::stoi(v);
    else if (k == "--iters") a.iters = std::stoi(v);
    else if (k == "--checkpoint") a.checkpoint = v;
    else if (k == "--device") a.device = v;
    else throw std::invalid_argument("unknown option " + k);
  }
  if (a.mode != "train" && a.mode != "infer") throw std::invalid_argument("--mode must be train or infer");
  return a;
}

}  // namespace

int main(int argc, char** argv) try {
  const args a = parse(argc, argv);
#ifdef _OPENMP
  omp_set_num_threads(a.threads);
#endif
  nlohmann::json cfg;
  std::unique_ptr<trainer::model> m;
  if (!a.checkpoint.empty()) {
#ifdef PSAP_BENCH_CHECKPOINTS
    const trainer::loaded_checkpoint ck = trainer::read_checkpoint(a.checkpoint);
    m = trainer::model_from_checkpoint(ck, "'" + a.checkpoint + "'");
#else
    throw std::invalid_argument("--checkpoint: this build of the benchmark has no checkpoint reader (psap-train's cli library was not built)");
#endif
  } else if (a.model.rfind("resnet", 0) == 0) {
    const bool option_b = a.model.size() > 2 && a.model.substr(a.model.size() - 2) == "-B";
    const int depth = std::stoi(a.model.substr(6, option_b ? a.model.size() - 8 : std::string::npos));
    cfg = trainer::resnet_config(depth, 10, a.channels, a.size, a.size, option_b ? 'B' : 'A');
  } else if (a.model == "vgg16") {
    cfg = trainer::vgg_config(10, a.channels, a.size, a.size);
  } else {
    throw std::invalid_argument("unknown model " + a.model);
  }
  if (!m) m = trainer::make_model(cfg, 1);
  m = trainer::device::place_on(std::move(m), a.device);
  std::string where = "cpu";
  if (auto* d = dynamic_cast<trainer::device::device_model*>(m.get())) where = d->executor().name();
  const std::string model_name = a.checkpoint.empty() ? a.model : m->name();
  const int channels = m->in_channels(), height = m->input_h(), width = m->input_w(), classes = m->num_classes();
  trainer::rng g(7);
  std::vector<float> x(static_cast<std::size_t>(a.batch) * static_cast<std::size_t>(channels * height * width));
  for (auto& v : x) v = static_cast<float>(g.normal());
  std::vector<std::int32_t> y(static_cast<std::size_t>(a.batch));
  for (auto& v : y) v = static_cast<std::int32_t>(g.below(static_cast<std::uint64_t>(classes)));
  std::vector<float> logits(static_cast<std::size_t>(a.batch) * static_cast<std::size_t>(classes)), dlogits(logits.size());
  trainer::sgd opt(*m, {0.01f, 0.9f, 0.0f, 5e-4f, true});
  trainer::cross_entropy ce;
  const bool train = a.mode == "train";
  auto iteration = [&] {
    m->forward(x.data(), a.batch, logits.data(), train);
    if (train) {
      ce.forward(logits.data(), y.data(), a.batch, classes);
      ce.backward(dlogits.data());
      m->backward(dlogits.data());
      opt.step();
    }
  };
  // Process CPU time too: on a loaded machine img per CPU-second is steadier
  // than wall-clock img/s (it still counts OpenMP spin-waiting).
  auto cpu_now = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  };
  for (int i = 0; i < a.warmup; ++i) iteration();
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_now();
  for (int i = 0; i < a.iters; ++i) iteration();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = cpu_now() - c0;
  std::printf("{\"impl\": \"psap\", \"model\": \"%s\", \"mode\": \"%s\", \"input\": \"%dx%dx%d\", \"batch\": %d, "
              "\"threads\": %d, \"device\": \"%s\", \"img_per_s\": %.2f, \"img_per_cpu_s\": %.2f, \"macs\": %lld, \"params\": %lld}\n",
              model_name.c_str(), a.mode.c_str(), channels, height, width, a.batch, trainer::max_threads(), where.c_str(),
              a.batch * a.iters / dt, a.batch * a.iters / cpu, static_cast<long long>(trainer::total_macs(*m)),
              static_cast<long long>(trainer::parameter_count(*m)));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "trainer_throughput: %s\n", e.what());
  return 2;
}
