// A pointer to int handed to psap::filters(data, n, k): filter banks hold floats.
#include <psap/tensor/view.hpp>

#include <vector>

int main() {
#ifdef PSAP_SHOULD_FAIL_TO_BUILD
    std::vector<int> w(6);
#else
    std::vector<double> w(6);
#endif
    const auto v = psap::filters(w.data(), 2, 3);
    return static_cast<int>(v.rows()) - 2;
}
