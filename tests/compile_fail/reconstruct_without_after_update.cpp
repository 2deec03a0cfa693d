// A user reconstruction policy that forgot after_update(): psap::pruner must
// reject it and name the reconstruction concept.
#include <psap/policy/criterion/lp_norm.hpp>
#include <psap/policy/protect/none.hpp>
#include <psap/policy/schedule/uniform.hpp>
#include <psap/pruner.hpp>

#include <span>

struct my_reconstruct {
    template <class Net>
    void apply(const Net&, const psap::step_context&, std::span<const psap::group_update>, psap::snapshot_store<Net>&) {}
#ifndef PSAP_SHOULD_FAIL_TO_BUILD
    template <class Net>
    void after_update(const Net&, std::span<const psap::group_state>, psap::snapshot_store<Net>&) {}
#endif
};

int main() {
    psap::pruner<psap::uniform, psap::l2_norm, psap::no_protection, my_reconstruct> p;
    return static_cast<int>(p.steps_taken());
}
