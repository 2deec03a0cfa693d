// A user protector that forgot shield(): psap::pruner must reject it and name
// the protector concept.
#include <psap/policy/criterion/lp_norm.hpp>
#include <psap/policy/reconstruct/soft.hpp>
#include <psap/policy/schedule/uniform.hpp>
#include <psap/pruner.hpp>

#include <span>
#include <vector>

struct my_protector {
    template <class Net>
    void restores(const Net&, const psap::step_context&, std::span<std::vector<psap::index>>) {}
#ifndef PSAP_SHOULD_FAIL_TO_BUILD
    template <class Net>
    void shield(const Net&, const psap::step_context&, std::span<const psap::index>, std::span<std::vector<psap::index>>) {}
#endif
};

int main() {
    psap::pruner<psap::uniform, psap::l2_norm, my_protector, psap::soft> p;
    return static_cast<int>(p.steps_taken());
}
