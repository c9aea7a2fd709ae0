#include "server/strategy/stragglers.h"

#include <algorithm>
#include <cmath>

#include "common/base/check.h"
#include "common/random/stream.h"

namespace fedsim {

std::int64_t NumStragglers(std::int64_t m, double fraction) {
  if (m <= 0 || !(fraction > 0.0)) return 0;
  const auto active = static_cast<std::int64_t>(
      std::floor(static_cast<double>(m) * (1.0 - fraction) + 0.5));
  return std::clamp<std::int64_t>(m - active, 0, m);
}

std::vector<TaskSpec> PlanWithStragglers(const StragglerOptions& options,
                                         Round round,
                                         std::span<const ClientId> participants,
                                         const LocalTrainingSpec& local) {
  const auto m = static_cast<std::int64_t>(participants.size());
  const std::int64_t s = NumStragglers(m, options.fraction);
  std::vector<bool> straggles(participants.size(), false);
  if (s > 0) {
    RngStream rng(options.seed, RngPurpose::kStragglers, -1, round);
    for (std::int64_t i : rng.SampleWithoutReplacement(m, s)) straggles[i] = true;
  }
  std::vector<TaskSpec> tasks;
  tasks.reserve(participants.size());
  for (std::size_t i = 0; i < participants.size(); ++i) {
    const ClientId k = participants[i];
    if (!straggles[i]) {
      tasks.push_back(TaskSpec{k, local});
      continue;
    }
    if (!options.keep) continue;  // dropped: no task
    TaskSpec spec{k, local};
    RngStream rng(options.seed, RngPurpose::kStragglers, k.value, round);
    if (local.max_steps > 0) {
      FEDSIM_CHECK(local.max_steps >= 2);
      spec.local.max_steps =
          1 + static_cast<std::int64_t>(
                  rng.UniformInt(static_cast<std::uint64_t>(local.max_steps - 1)));
    } else {
      FEDSIM_CHECK(local.epochs >= 2);
      spec.local.epochs =
          1 + static_cast<int>(rng.UniformInt(static_cast<std::uint64_t>(local.epochs - 1)));
    }
    tasks.push_back(std::move(spec));
  }
  return tasks;
}

}  // namespace fedsim
