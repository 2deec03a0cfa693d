#pragma once
// A tiny reference of one channel of conv -> batch norm (train mode, biased
// variance) -> ReLU, forward and backward in double precision. The conv is a
// 1x1 conv over M positions with K input channels: z_p = sum_k x_pk w_k.
// Loss L = sum_p u_p a_p for a fixed upstream gradient u.
#include <cmath>
#include <cstddef>
#include <vector>

namespace psap_test::bn_ref {

struct result {
    double loss = 0, mean = 0, var = 0;
    std::vector<double> xhat, y, a;
    std::vector<double> dw;  ///< dL/dw (K)
    double dgamma = 0, dbeta = 0;
    double gate_grad = 0;  ///< sum over x_hat > 0 of dL/da * x_hat (one-sided dL/dgamma at gamma = 0+)
};

/// x is M x K row-major.
inline result run(const std::vector<double>& x, std::size_t M, std::size_t K, const std::vector<double>& w, double gamma,
                  double beta, const std::vector<double>& u, double eps = 1e-5) {
    result r;
    std::vector<double> z(M, 0.0);
    for (std::size_t p = 0; p < M; ++p)
        for (std::size_t k = 0; k < K; ++k) z[p] += x[p * K + k] * w[k];
    for (double v : z) r.mean += v;
    r.mean /= static_cast<double>(M);
    for (double v : z) r.var += (v - r.mean) * (v - r.mean);
    r.var /= static_cast<double>(M);  // biased, as batch norm normalises in training
    const double inv = 1.0 / std::sqrt(r.var + eps);
    r.xhat.resize(M), r.y.resize(M), r.a.resize(M);
    for (std::size_t p = 0; p < M; ++p) {
        r.xhat[p] = (z[p] - r.mean) * inv;
        r.y[p] = gamma * r.xhat[p] + beta;
        r.a[p] = r.y[p] > 0 ? r.y[p] : 0.0;
        r.loss += u[p] * r.a[p];
    }
    // backward; ReLU'(0) = 0 as in PyTorch
    std::vector<double> dy(M), dxhat(M), dz(M);
    double m1 = 0, m2 = 0;
    for (std::size_t p = 0; p < M; ++p) {
        dy[p] = r.y[p] > 0 ? u[p] : 0.0;
        r.dgamma += dy[p] * r.xhat[p];
        r.dbeta += dy[p];
        dxhat[p] = gamma * dy[p];
        m1 += dxhat[p];
        m2 += dxhat[p] * r.xhat[p];
        if (r.xhat[p] > 0) r.gate_grad += u[p] * r.xhat[p];
    }
    m1 /= static_cast<double>(M);
    m2 /= static_cast<double>(M);
    for (std::size_t p = 0; p < M; ++p) dz[p] = inv * (dxhat[p] - m1 - r.xhat[p] * m2);
    r.dw.assign(K, 0.0);
    for (std::size_t p = 0; p < M; ++p)
        for (std::size_t k = 0; k < K; ++k) r.dw[k] += x[p * K + k] * dz[p];
    return r;
}

inline double norm(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s);
}

}  // namespace psap_test::bn_ref
