// A std::vector<float> handed to psap::as_matrix_view, which is constrained on
// the filter-bank concept.
#include <psap/tensor/concepts.hpp>

#include <vector>

int main() {
    std::vector<float> w(6, 1.0f);
#ifdef PSAP_SHOULD_FAIL_TO_BUILD
    const auto v = psap::as_matrix_view(w);
#else
    const auto v = psap::as_matrix_view(psap::matrix_view<float>(w.data(), 2, 3));
#endif
    return static_cast<int>(v.rows()) - 2;
}
