// A std::vector<float> handed to psap::channels, which wants a channel vector.
#include <psap/tensor/view.hpp>

#include <vector>

int main() {
    std::vector<float> gamma(4, 1.0f);
#ifdef PSAP_SHOULD_FAIL_TO_BUILD
    const auto v = psap::channels(gamma);
#else
    const auto v = psap::channels(gamma.data(), 4);
#endif
    return static_cast<int>(v.size()) - 4;
}
