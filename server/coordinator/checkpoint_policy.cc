#include "server/coordinator/checkpoint_policy.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "algorithms/registry.h"
#include "common/base/status_macros.h"

namespace fedsim {

CheckpointData MakeCheckpointData(const CoordinatorRun& run, const StepReport& report,
                                  const RunSummary& summary, double wall_time_s) {
  CheckpointData data;
  data.config = run.config;
  data.runtime = run.runtime;
  data.incarnation = run.incarnation;
  data.engine = report.snapshot.has_value() ? *report.snapshot : run.engine->Snapshot();
  data.clients = run.client_states;
  data.wall_time_s = wall_time_s;
  data.best_accuracy = summary.best_accuracy;
  return data;
}

absl::StatusOr<bool> MaybeCheckpoint(CoordinatorRun& run, const StepReport& report, bool last,
                                     const RunSummary& summary, double wall_time_s,
                                     Clock& clock) {
  const int every = run.config.checkpoint().every();
  if (every <= 0) return false;
  // Rounds (steps) completed.
  const std::int64_t completed = report.row.round + 1;
  if (run.before_checkpoint) run.before_checkpoint(completed);
  // Too soon after the previous checkpoint (the last step always writes).
  const double min_interval = run.config.checkpoint().min_interval_s();
  const bool too_soon = min_interval > 0 && run.last_checkpoint.has_value() &&
                        absl::ToDoubleSeconds(clock.Now() - *run.last_checkpoint) < min_interval;
  if (!last && (completed % every != 0 || too_soon)) return false;
  FEDSIM_ASSIGN_OR_RETURN(
      const std::string path,
      WriteCheckpoint(run.log->dir(), MakeCheckpointData(run, report, summary, wall_time_s),
                      run.config.checkpoint().keep()));
  (void)path;
  run.last_checkpoint = clock.Now();
  return true;
}

absl::Status CheckCheckpointSize(const CoordinatorRun& run, std::int64_t limit) {
  if (run.config.checkpoint().every() <= 0 || run.engine->kind() != EngineKind::kRounds) {
    return absl::OkStatus();
  }
  // protobuf refuses to serialise a message of 2 GiB or more; the default
  // limit's margin covers the fields not counted here (tallies, ledgers,
  // the config).
  const EngineSnapshot snapshot = run.engine->Snapshot();
  const auto model = static_cast<std::int64_t>(snapshot.model.size() * sizeof(double));
  const auto strategy = static_cast<std::int64_t>(snapshot.strategy_state.size());
  std::int64_t per_client = 0;
  for (const auto& [name, size] :
       ClientStateLayoutOf(run.config, run.experiment->num_parameters())) {
    per_client += static_cast<std::int64_t>(size) * static_cast<std::int64_t>(sizeof(double)) +
                  static_cast<std::int64_t>(name.size()) + 16;
  }
  const std::int64_t clients = per_client * run.experiment->num_clients();
  const std::int64_t total = model + strategy + clients;
  if (total <= limit) return absl::OkStatus();
  const auto gb = [](std::int64_t b) {
    return b >= 1000000000 ? absl::StrFormat("%.2f GB", b / 1e9)
           : b >= 1000000  ? absl::StrFormat("%.2f MB", b / 1e6)
                           : absl::StrCat(b, " bytes");
  };
  return absl::InvalidArgumentError(absl::StrCat(
      "config: checkpoint.every = ", run.config.checkpoint().every(),
      "; a checkpoint of this run would hold ", gb(total), " (the model ", gb(model),
      ", the strategy's state ", gb(strategy), ", the clients' states ", gb(clients),
      "), over the ", gb(limit), " one checkpoint can hold: use fewer clients or "
      "parameters, or turn checkpoints off (checkpoint.every: 0)"));
}

}  // namespace fedsim
