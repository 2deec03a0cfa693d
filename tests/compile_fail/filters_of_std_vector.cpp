// A std::vector<float> handed to psap::filters, which wants a filter bank.
#include <psap/tensor/view.hpp>

#include <vector>

int main() {
    std::vector<float> w(6, 1.0f);
#ifdef PSAP_SHOULD_FAIL_TO_BUILD
    const auto v = psap::filters(w);
#else
    const auto v = psap::filters(w.data(), 2, 3);
#endif
    return static_cast<int>(v.rows()) - 2;
}
