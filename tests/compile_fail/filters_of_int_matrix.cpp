// An integer Eigen matrix handed to psap::filters: filter banks hold floats.
#include <psap/tensor/eigen.hpp>

int main() {
#ifdef PSAP_SHOULD_FAIL_TO_BUILD
    Eigen::MatrixXi w = Eigen::MatrixXi::Zero(2, 3);
#else
    Eigen::MatrixXf w = Eigen::MatrixXf::Zero(2, 3);
#endif
    const auto v = psap::filters(w);
    return static_cast<int>(v.rows()) - 2;
}
