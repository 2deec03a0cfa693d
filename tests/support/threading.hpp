#pragma once
// Sets the CPU backend's threading for a scope (psap::cpu_threading is
// process-wide), restoring the previous setting on exit.
#include <psap/backend/cpu.hpp>

namespace psap_test {

struct threading_scope {
    psap::cpu_threading saved = psap::cpu_threading::get();
    threading_scope(int threads, psap::index min_work) { psap::cpu_threading::set({threads, min_work}); }
    ~threading_scope() { psap::cpu_threading::set(saved); }
    threading_scope(const threading_scope&) = delete;
    threading_scope& operator=(const threading_scope&) = delete;
};

}  // namespace psap_test
