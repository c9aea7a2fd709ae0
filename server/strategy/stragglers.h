// File: server/strategy/stragglers.h
//
// Systems heterogeneity as in FedProx (Li et al., MLSys 2020; DATA.md
// "FedProx's training setup"): a fraction s of each round's m participants
// are stragglers that cannot finish their local work.
//
//   * m - round(m (1 - s)) stragglers (round half up; FedProx's code keeps
//     round(m (1 - s)) "active" clients), drawn uniformly without
//     replacement among the participants from (seed, kStragglers, -1, round).
//   * keep = false (FedAvg in the paper): stragglers are dropped and get no
//     task. keep = true (FedProx): each straggler k runs a number of local
//     epochs uniform in {1, ..., E - 1} (numpy's randint(1, E) in the FedProx
//     code), or with max_steps = I > 0 a number of steps uniform in
//     {1, ..., I - 1}, drawn from (seed, kStragglers, k, round).
//
// Pure and deterministic: the same (seed, round, participants) give the
// same plan in every process.
#ifndef FEDSIM_SERVER_STRATEGY_STRAGGLERS_H_
#define FEDSIM_SERVER_STRATEGY_STRAGGLERS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "common/base/task.h"
#include "common/base/types.h"

namespace fedsim {

struct StragglerOptions {
  double fraction = 0.0;   // s in [0, 1]
  bool keep = false;       // aggregate their partial work (FedProx)
  std::uint64_t seed = 1;
};

// The number of stragglers among m participants: m - round(m (1 - s)).
std::int64_t NumStragglers(std::int64_t m, double fraction);

// One task per participant (sorted by id, as `participants`), with `local`
// for everyone but the stragglers, which are dropped or given less work.
// REQUIRES: with keep and fraction > 0, local.max_steps >= 2 or (max_steps
// = 0 and) local.epochs >= 2 (checked).
std::vector<TaskSpec> PlanWithStragglers(const StragglerOptions& options,
                                         Round round,
                                         std::span<const ClientId> participants,
                                         const LocalTrainingSpec& local);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_STRAGGLERS_H_
