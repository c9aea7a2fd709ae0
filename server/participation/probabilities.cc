#include "server/participation/probabilities.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"

namespace fedsim {

absl::StatusOr<std::vector<std::vector<double>>> LabelHistograms(
    const Eigen::VectorXd& labels, int num_classes,
    const std::vector<std::vector<std::int64_t>>& client_rows) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "label histograms need class labels; the data has ", num_classes,
        " classes"));
  }
  std::vector<std::vector<double>> out;
  out.reserve(client_rows.size());
  for (std::size_t n = 0; n < client_rows.size(); ++n) {
    std::vector<double> h(static_cast<std::size_t>(num_classes), 0.0);
    for (std::int64_t row : client_rows[n]) {
      const double y = labels[row];
      if (!(y >= 0.0 && y < num_classes) || y != std::floor(y)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "row ", row, " of client ", n, " has label ", y,
            ", not a class index in [0, ", num_classes, ")"));
      }
      h[static_cast<std::size_t>(y)] += 1.0;
    }
    if (!client_rows[n].empty()) {
      const double total = static_cast<double>(client_rows[n].size());
      for (double& v : h) v /= total;
    }
    out.push_back(std::move(h));
  }
  return out;
}

std::vector<double> DataCorrelatedProbabilities(
    const std::vector<std::vector<double>>& pi, const DataCorrelatedSpec& spec,
    RngStream& rng) {
  FEDSIM_CHECK(!pi.empty() && !pi[0].empty());
  FEDSIM_CHECK(spec.p_mean > 0.0 && spec.p_mean <= 1.0 && spec.p_min >= 0.0 &&
               spec.p_min <= 1.0 && spec.label_alpha > 0.0);
  const int num_labels = static_cast<int>(pi[0].size());
  const std::vector<double> m = rng.Dirichlet(num_labels, spec.label_alpha);
  const double scaling = spec.p_mean * static_cast<double>(num_labels);
  std::vector<double> p;
  p.reserve(pi.size());
  for (const std::vector<double>& h : pi) {
    FEDSIM_CHECK(static_cast<int>(h.size()) == num_labels);
    double dot = 0.0;
    for (int l = 0; l < num_labels; ++l) dot += h[l] * m[l];
    p.push_back(std::min(1.0, std::max(spec.p_min, dot * scaling)));
  }
  return p;
}

}  // namespace fedsim
