// File: common/data/synthetic.h
//
// Synthetic federated data sets, generated from keyed RNG streams so that a
// seed fully determines them.
#ifndef FEDSIM_COMMON_DATA_SYNTHETIC_H_
#define FEDSIM_COMMON_DATA_SYNTHETIC_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"

namespace fedsim {

// Linear regression with a known optimum. Client k draws features
// x ~ N(mu_k, I_d) with mu_k = heterogeneity * N(0, I_d), a client model
// w_k = w + heterogeneity * N(0, I_d) around a shared w ~ N(0, I_d), and
// targets y = x . w_k + noise_std * N(0, 1). The test set is drawn the same
// way from the shared w with mu = 0. `optimum` is the exact minimiser of the
// pooled mean squared error (1/2n) sum_i (x_i . theta - y_i)^2 over all
// training rows, which is FedAvg's objective with weights n_k / n.
struct LeastSquaresSpec {
  int num_clients = 10;
  int examples_per_client = 50;
  int dim = 5;
  double noise_std = 0.1;
  double heterogeneity = 0.0;
  int test_examples = 500;
};
absl::StatusOr<FederatedData> MakeLeastSquares(const LeastSquaresSpec& spec,
                                               std::uint64_t seed);

// FedProx's synthetic(alpha, beta) and synthetic-IID data (Li et al. 2020;
// exact recipe in DATA.md): num_devices devices with
// floor(LogNormal(4, 2)) + 50 examples each, d = 60, C = 10, split 90/10 per
// device into train and test; the test set pools the devices' test rows.
struct FedProxSyntheticSpec {
  double alpha = 1.0;
  double beta = 1.0;
  bool iid = false;
  int num_devices = 30;
  int dim = 60;
  int num_classes = 10;
};
absl::StatusOr<FederatedData> MakeFedProxSynthetic(
    const FedProxSyntheticSpec& spec, std::uint64_t seed);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DATA_SYNTHETIC_H_
