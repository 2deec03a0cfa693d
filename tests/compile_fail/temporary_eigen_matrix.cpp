// A temporary Eigen matrix handed to psap::filters: the view would dangle.
#include <psap/tensor/eigen.hpp>

int main() {
#ifdef PSAP_SHOULD_FAIL_TO_BUILD
    const auto v = psap::filters(Eigen::MatrixXf(Eigen::MatrixXf::Zero(2, 3)));
#else
    Eigen::MatrixXf w = Eigen::MatrixXf::Zero(2, 3);
    const auto v = psap::filters(w);
#endif
    return static_cast<int>(v.rows()) - 2;
}
