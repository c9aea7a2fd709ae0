#include "server/strategy/robust_aggregation.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"

namespace fedsim {
namespace {

using Updates = std::span<const FlatVector* const>;

// Median of `v` (sorted in place); even size: the mean of the middle two.
double MedianOf(std::vector<double>& v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

// Indices 0..n-1 ordered by (score, index).
std::vector<std::size_t> RankByScore(const std::vector<double>& scores) {
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return scores[a] < scores[b];
  });
  return order;
}

FlatVector MeanOf(Updates updates, const std::vector<std::size_t>& chosen) {
  // `chosen` in client order, so that the sum runs in client-id order.
  std::vector<std::size_t> sorted = chosen;
  std::sort(sorted.begin(), sorted.end());
  FlatVector sum = FlatVector::Zero(updates[0]->size());
  for (std::size_t i : sorted) sum += *updates[i];
  return sum / static_cast<double>(sorted.size());
}

}  // namespace

std::string_view RobustRuleName(RobustRule rule) {
  switch (rule) {
    case RobustRule::kMean: return "mean";
    case RobustRule::kCoordinateMedian: return "coordinate_median";
    case RobustRule::kTrimmedMean: return "trimmed_mean";
    case RobustRule::kKrum: return "krum";
    case RobustRule::kMultiKrum: return "multi_krum";
    case RobustRule::kBulyan: return "bulyan";
  }
  return "?";
}

std::int64_t MinimumUpdates(const RobustOptions& o) {
  switch (o.rule) {
    case RobustRule::kKrum: return 2 * o.byzantine + 3;
    case RobustRule::kMultiKrum: return std::max(2 * o.byzantine + 3, o.multi_krum_m);
    case RobustRule::kBulyan: return 4 * o.byzantine + 3;
    case RobustRule::kMean: return 0;
    default: return 1;
  }
}

absl::Status CheckRobustPreconditions(const RobustOptions& o, std::int64_t n) {
  const std::int64_t need = MinimumUpdates(o);
  if (n >= need) return absl::OkStatus();
  std::string rule;
  switch (o.rule) {
    case RobustRule::kKrum:
      rule = absl::StrCat("n >= 2f + 3 = ", need, " (f = ", o.byzantine, ")");
      break;
    case RobustRule::kMultiKrum:
      rule = absl::StrCat("n >= max(2f + 3, m) = ", need, " (f = ", o.byzantine,
                          ", m = ", o.multi_krum_m, ")");
      break;
    case RobustRule::kBulyan:
      rule = absl::StrCat("n >= 4f + 3 = ", need, " (f = ", o.byzantine, ")");
      break;
    default:
      rule = "n >= 1";
  }
  return absl::FailedPreconditionError(
      absl::StrCat(std::string(RobustRuleName(o.rule)), " needs ", rule, " updates; n = ", n));
}

std::vector<double> KrumScores(Updates updates, std::int64_t f) {
  const std::size_t n = updates.size();
  std::vector<std::vector<double>> d2(n, std::vector<double>(n, 0.0));
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) {
      d2[i][j] = d2[j][i] = (*updates[i] - *updates[j]).squaredNorm();
    }
  }
  const auto neighbours = static_cast<std::size_t>(
      std::max<std::int64_t>(0, static_cast<std::int64_t>(n) - f - 2));
  std::vector<double> scores(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<double> others;
    others.reserve(n - 1);
    for (std::size_t j = 0; j < n; ++j) {
      if (j != i) others.push_back(d2[i][j]);
    }
    std::sort(others.begin(), others.end());
    double s = 0.0;
    for (std::size_t j = 0; j < std::min(neighbours, others.size()); ++j) s += others[j];
    scores[i] = s;
  }
  return scores;
}

absl::StatusOr<RobustAggregate> AggregateRobust(const RobustOptions& o,
                                                Updates updates) {
  FEDSIM_CHECK(o.rule != RobustRule::kMean);
  const auto n = static_cast<std::int64_t>(updates.size());
  if (absl::Status s = CheckRobustPreconditions(o, n); !s.ok()) return s;
  const Eigen::Index d = updates[0]->size();
  RobustAggregate out;
  out.weights.assign(updates.size(), 0.0);
  std::vector<double> column(updates.size());
  switch (o.rule) {
    case RobustRule::kCoordinateMedian:
    case RobustRule::kTrimmedMean: {
      const auto k = o.rule == RobustRule::kTrimmedMean
                         ? static_cast<std::int64_t>(
                               std::floor(o.trim_fraction * static_cast<double>(n)))
                         : 0;
      out.value.resize(d);
      for (Eigen::Index c = 0; c < d; ++c) {
        for (std::size_t i = 0; i < updates.size(); ++i) column[i] = (*updates[i])[c];
        if (o.rule == RobustRule::kCoordinateMedian) {
          out.value[c] = MedianOf(column);
        } else {
          std::sort(column.begin(), column.end());
          double s = 0.0;
          for (std::int64_t i = k; i < n - k; ++i) s += column[i];
          out.value[c] = s / static_cast<double>(n - 2 * k);
        }
      }
      out.weights.assign(updates.size(), 1.0 / static_cast<double>(n));
      return out;
    }
    case RobustRule::kKrum:
    case RobustRule::kMultiKrum: {
      const std::vector<std::size_t> rank = RankByScore(KrumScores(updates, o.byzantine));
      const std::int64_t m =
          o.rule == RobustRule::kKrum ? 1
          : o.multi_krum_m > 0        ? o.multi_krum_m
                                      : n - o.byzantine;
      std::vector<std::size_t> chosen(rank.begin(), rank.begin() + m);
      out.value = MeanOf(updates, chosen);
      for (std::size_t i : chosen) out.weights[i] = 1.0 / static_cast<double>(m);
      return out;
    }
    case RobustRule::kBulyan: {
      const std::int64_t theta = n - 2 * o.byzantine;
      const std::int64_t beta = theta - 2 * o.byzantine;
      // Selection: Krum over the updates not yet selected, theta times.
      std::vector<std::size_t> remaining(updates.size());
      std::iota(remaining.begin(), remaining.end(), std::size_t{0});
      std::vector<std::size_t> selected;
      while (static_cast<std::int64_t>(selected.size()) < theta) {
        std::vector<const FlatVector*> rest;
        for (std::size_t i : remaining) rest.push_back(updates[i]);
        const std::size_t best = RankByScore(KrumScores(rest, o.byzantine))[0];
        selected.push_back(remaining[best]);
        remaining.erase(remaining.begin() + static_cast<std::ptrdiff_t>(best));
      }
      std::sort(selected.begin(), selected.end());  // client order
      // Aggregation: per coordinate, the beta values closest to the median.
      out.value.resize(d);
      std::vector<double> values(selected.size()), sorted(selected.size());
      std::vector<std::size_t> order(selected.size());
      for (Eigen::Index c = 0; c < d; ++c) {
        for (std::size_t i = 0; i < selected.size(); ++i) {
          values[i] = (*updates[selected[i]])[c];
        }
        sorted = values;
        const double med = MedianOf(sorted);
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
          return std::abs(values[a] - med) < std::abs(values[b] - med);
        });
        std::vector<std::size_t> closest(order.begin(), order.begin() + beta);
        std::sort(closest.begin(), closest.end());
        double s = 0.0;
        for (std::size_t i : closest) s += values[i];
        out.value[c] = s / static_cast<double>(beta);
      }
      for (std::size_t i : selected) out.weights[i] = 1.0 / static_cast<double>(theta);
      return out;
    }
    case RobustRule::kMean:
      break;
  }
  return absl::InternalError("unreachable");
}

}  // namespace fedsim
