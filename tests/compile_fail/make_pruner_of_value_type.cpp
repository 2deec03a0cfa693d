// make_pruner, like the presets and psap::pruner, takes the network type as
// its template argument; given the value type instead, the diagnostic must
// name the concept rather than fail deep inside the registry. (Without
// PSAP_SHOULD_FAIL_TO_BUILD the same file builds a valid pruner.)
#include <psap/any_pruner.hpp>

#ifdef PSAP_SHOULD_FAIL_TO_BUILD
using net_type = double;
#else
using net_type = psap::network<double>;
#endif

int main() {
    auto p = psap::make_pruner<net_type>(nlohmann::json::parse(R"({"preset": "sfp"})"));
    return static_cast<int>(p.steps_taken());
}
