// Data-parallel training (docs/integration.md, "Data-parallel training"): two
// workers (threads standing in for processes), each with its own replica of
// the model and its own pruner, on different data. The framework averages
// weight gradients and keeps BN buffers in sync; the pruner combines its own
// statistics through the all-reduce given to set_all_reduce. Every worker
// must take the same decisions: exits non-zero if the two logs differ.
#include "toy_model.hpp"

#include <psap/psap.hpp>

#include <barrier>
#include <cstdio>
#include <span>
#include <thread>
#include <vector>

namespace {

constexpr int workers = 2, epochs = 8, iters = 10, batch_size = 16;
constexpr std::uint64_t seed = 1;

/// Stands in for MPI or NCCL: an in-place elementwise sum over the workers,
/// added in rank order so that every worker gets bitwise the same result.
class communicator {
public:
    template <class T>
    void all_reduce_sum(int rank, std::span<T> buf) {
        slots_[rank].assign(buf.begin(), buf.end());
        sync_.arrive_and_wait();
        for (std::size_t i = 0; i < buf.size(); ++i) {
            double s = 0;
            for (int r = 0; r < workers; ++r) s += slots_[r][i];
            buf[i] = static_cast<T>(s);
        }
        sync_.arrive_and_wait();  // no slot is overwritten before everyone has read it
    }
    template <class T>
    void average(int rank, std::vector<T>& v) {
        all_reduce_sum(rank, std::span<T>(v));
        for (auto& x : v) x /= workers;
    }

private:
    std::barrier<> sync_{workers};
    std::vector<double> slots_[workers];
};

void worker(int rank, communicator& comm, std::vector<psap::step_log>& log_out) {
    toy::model m(16, 16, seed);  // identical initial weights on every worker
    psap::network<float> net = toy::describe(m);
    auto pruner = psap::presets::psap({psap::budget_kind::flops, 0.5}, epochs);
    // [all-reduce]
    // Called at every step(), in the same order on every worker, with the
    // criterion's and the protector's accumulated statistics: sum them in place.
    pruner.set_all_reduce([&comm, rank](std::span<double> buf) { comm.all_reduce_sum(rank, buf); });
    // [all-reduce]
    pruner.step(net, 0);
    for (int epoch = 1; epoch <= epochs; ++epoch) {
        for (int it = 0; it < iters; ++it) {
            // Each worker its own shard of the data.
            m.forward_backward(toy::make_batch(seed, std::uint64_t(((epoch * iters + it) * workers) + rank), batch_size));
            pruner.observe(net);  // this worker's gradients
            for (auto* c : {&m.c1, &m.c2}) {  // what DDP does: average the gradients...
                comm.average(rank, c->gw), comm.average(rank, c->ggamma), comm.average(rank, c->gbeta);
            }
            comm.average(rank, m.gfw), comm.average(rank, m.gfb);
            m.sgd(0.05f, 0.9f, 5e-4f);
            for (auto* c : {&m.c1, &m.c2}) comm.average(rank, c->mean), comm.average(rank, c->var);  // ...and sync BN buffers
            pruner.after_update(net);
        }
        pruner.step(net, epoch);  // a collective call: every worker, same point
    }
    log_out = pruner.log();
}

}  // namespace

int main() {
    communicator comm;
    std::vector<psap::step_log> logs[workers];
    std::vector<std::thread> threads;
    for (int r = 0; r < workers; ++r) threads.emplace_back(worker, r, std::ref(comm), std::ref(logs[r]));
    for (auto& t : threads) t.join();
    const bool same = nlohmann::json(logs[0]) == nlohmann::json(logs[1]);
    long long restored = 0;
    for (const auto& s : logs[0])
        for (const auto& g : s.groups) restored += g.restored;
    std::printf("%d workers, %zu steps, %lld restores: decisions %s\n", workers, logs[0].size(), restored,
                same ? "identical" : "DIFFERENT");
    return same ? 0 : 1;
}
