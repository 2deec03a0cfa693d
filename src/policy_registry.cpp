// The one instantiation of the policy registry that psap's own tests, doc
// programs and trainer link (they are compiled with PSAP_EXTERN_REGISTRY):
// building it instantiates every shipped policy, so each of the dozen
// translation units that call make_pruner() would otherwise do that again.
#include <psap/any_pruner.hpp>

template class psap::policy_registry<psap::network<float>>;
