// File: server/participation/probabilities.h
//
// The per-client participation probabilities p_n that the Bernoulli, Markov
// and cyclic models of availability.h use, and that the known-probability
// baseline of FedAU reads as its (oracle) weights 1/p_n.
//
// The FedAU paper's construction (ALGORITHMS.md §2.4, IBM/fedau
// util/util.py) correlates participation with data: one vector
// m ~ Dirichlet(alpha_p 1_L) over the L labels is drawn for the whole
// population, and
//   p_n = max(p_min, (p_mean L) * sum_l pi_n(l) m_l),
// where pi_n is client n's normalised label histogram. fedsim additionally
// caps p_n at 1 (the paper's settings, p_mean L <= 1, never exceed it).
#ifndef FEDSIM_SERVER_PARTICIPATION_PROBABILITIES_H_
#define FEDSIM_SERVER_PARTICIPATION_PROBABILITIES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/types.h"
#include "common/random/stream.h"

namespace fedsim {

// Normalised label histograms pi_n of every client: `labels` holds a class
// index in [0, num_classes) per training row, `client_rows[n]` the rows of
// client n. A client without rows gets the all-zero histogram. Fails with
// kInvalidArgument if num_classes < 1 or a label is not a class index.
absl::StatusOr<std::vector<std::vector<double>>> LabelHistograms(
    const Eigen::VectorXd& labels, int num_classes,
    const std::vector<std::vector<std::int64_t>>& client_rows);

struct DataCorrelatedSpec {
  double p_mean = 0.1;       // in (0, 1]
  double p_min = 0.02;       // in [0, 1]
  double label_alpha = 0.1;  // alpha_p > 0
};

// The FedAU paper's p_n from the label histograms `pi` (one per client, all
// of the same length L >= 1). `rng` draws m (fedsim keys it by
// (seed, kParticipation, -1, -1)). REQUIRES: a valid spec, pi non-empty.
std::vector<double> DataCorrelatedProbabilities(
    const std::vector<std::vector<double>>& pi, const DataCorrelatedSpec& spec,
    RngStream& rng);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_PARTICIPATION_PROBABILITIES_H_
