// File: server/strategy/robust_aggregation.h
//
// Byzantine-robust aggregation rules (RELIABILITY.md requirement 16;
// docs/robust.md). Each rule maps the n client updates of a round (sorted by
// client id) to one vector, UNWEIGHTED: the clients' n_k play no part, as in
// the papers (a Byzantine client could otherwise claim a huge n_k).
//
//   coordinate_median  per coordinate, the median of the n values (even n:
//                      the mean of the two middle values).
//   trimmed_mean       Yin et al., ICML 2018, Definition 2: per coordinate,
//                      drop the k = floor(beta n) largest and the k smallest
//                      values and average the remaining n - 2k.
//   krum               Blanchard et al., NeurIPS 2017: score(i) = sum of the
//                      squared distances from update i to its n - f - 2
//                      closest other updates; the update with the smallest
//                      score (ties: the lowest client id). Needs n >= 2f + 3.
//   multi_krum         the same scores; the mean of the m best-scored
//                      updates (ties: lower client id first). Needs
//                      n >= 2f + 3 and m <= n (m = 0: m = n - f).
//   bulyan             El Mhamdi et al., ICML 2018: theta = n - 2f updates
//                      are selected by applying Krum repeatedly to those not
//                      yet selected (removing each choice); then per
//                      coordinate the beta = theta - 2f values closest to the
//                      median of the theta selected values (ties: lower
//                      client id) are averaged. Needs n >= 4f + 3.
//
// Every result is a function of the updates in client order only: no
// thread count or arrival order enters. Sums run in client-id order and are
// divided by the count at the end.
#ifndef FEDSIM_SERVER_STRATEGY_ROBUST_AGGREGATION_H_
#define FEDSIM_SERVER_STRATEGY_ROBUST_AGGREGATION_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/types.h"

namespace fedsim {

enum class RobustRule {
  kMean,  // the algorithm's own weighted mean (not handled here)
  kCoordinateMedian,
  kTrimmedMean,
  kKrum,
  kMultiKrum,
  kBulyan,
};

// The config name of a rule ("coordinate_median").
std::string_view RobustRuleName(RobustRule rule);

struct RobustOptions {
  RobustRule rule = RobustRule::kMean;
  double trim_fraction = 0.1;  // trimmed_mean: beta in [0, 0.5)
  std::int64_t byzantine = 0;  // krum, multi_krum, bulyan: f >= 0
  std::int64_t multi_krum_m = 0;  // multi_krum: m >= 1; 0 = n - f
};

// The fewest updates `options.rule` can aggregate: 1 for the median and
// the trimmed mean, 2f + 3 for Krum, max(2f + 3, m) for Multi-Krum, 4f + 3
// for Bulyan.
std::int64_t MinimumUpdates(const RobustOptions& options);

// OK when the rule can aggregate n updates; otherwise kFailedPrecondition
// with one line naming the rule, n and the condition.
absl::Status CheckRobustPreconditions(const RobustOptions& options,
                                      std::int64_t n);

struct RobustAggregate {
  FlatVector value;
  // Nominal weight of each input in the result (reported in round_end):
  // 1/n for the coordinate-wise rules, 1 for Krum's choice, 1/m for each of
  // Multi-Krum's, 1/theta for each update Bulyan selected, 0 otherwise.
  std::vector<double> weights;
};

// Applies the rule to `updates` (in client-id order, all of one size,
// finite). REQUIRES: options.rule != kMean. Fails as
// CheckRobustPreconditions when there are too few updates.
absl::StatusOr<RobustAggregate> AggregateRobust(
    const RobustOptions& options, std::span<const FlatVector* const> updates);

// The Krum scores of `updates` with f Byzantine clients: for each update
// the sum of squared distances to its max(0, n - f - 2) closest others.
// Exposed for tests.
std::vector<double> KrumScores(std::span<const FlatVector* const> updates,
                               std::int64_t f);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_ROBUST_AGGREGATION_H_
