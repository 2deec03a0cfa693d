// A schedule passed in the criterion slot of psap::pruner: the diagnostic must
// name the criterion concept. (Without PSAP_SHOULD_FAIL_TO_BUILD the same file
// composes a valid pruner and must compile.)
#include <psap/policy/criterion/lp_norm.hpp>
#include <psap/policy/protect/none.hpp>
#include <psap/policy/reconstruct/soft.hpp>
#include <psap/policy/schedule/uniform.hpp>
#include <psap/pruner.hpp>

#ifdef PSAP_SHOULD_FAIL_TO_BUILD
using second = psap::uniform;
#else
using second = psap::l2_norm;
#endif

int main() {
    psap::pruner<psap::uniform, second, psap::no_protection, psap::soft> p;
    return static_cast<int>(p.steps_taken());
}
