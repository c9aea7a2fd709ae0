#include "server/coordinator/run.h"

#include <algorithm>
#include <filesystem>

#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"

namespace fedsim {

std::string AlgorithmName(const CoordinatorRun& run) { return run.engine->name(); }

const RoundEngine* RoundEngineOf(const CoordinatorRun& run) {
  return run.engine->kind() == EngineKind::kRounds
             ? static_cast<const RoundEngine*>(run.engine.get())
             : nullptr;
}

std::int64_t CompletedRounds(const CoordinatorRun& run) {
  // The wall-clock engine takes steps while earlier ones are published.
  return run.engine->kind() == EngineKind::kWallClock ? run.steps_logged
                                                      : run.engine->steps_done();
}

std::int64_t ProgressTotal(const CoordinatorRun& run, const MetricsRow& row) {
  std::int64_t total = run.config.rounds();
  const EngineKind kind = run.engine->kind();
  if (kind == EngineKind::kRounds) return total;
  if (kind == EngineKind::kVirtualClock && run.engine->done()) return row.round + 1;
  const double horizon = run.config.async().horizon();
  if (horizon > 0.0 && row.virtual_time > 0.0) {
    total = std::min<std::int64_t>(
        total, std::max<std::int64_t>(
                   row.round + 1, std::llround(static_cast<double>(row.round + 1) * horizon /
                                               row.virtual_time)));
  }
  return total;
}

absl::Status CompleteRun(CoordinatorRun& run, double wall_time_s) {
  const Engine& engine = *run.engine;
  const std::string model_path =
      (std::filesystem::path(run.log->dir()) / "model.bin").string();
  FEDSIM_RETURN_IF_ERROR(WriteModelFile(model_path, engine.model()));
  const TaskTally& t = engine.tally();
  nlohmann::json end = {{"event", "run_end"},
                        {"rounds", engine.steps_done()},
                        {"wall_time_s", wall_time_s},
                        {"model_hash", ModelHash(engine.model())},
                        {"tasks_issued", t.issued},
                        {"tasks_aggregated", t.aggregated},
                        {"tasks_timed_out", t.timed_out},
                        {"tasks_dropped", t.dropped},
                        {"pushes_rejected", t.rejected_pushes},
                        {"pushes_duplicate", t.duplicate_pushes}};
  engine.AddRunEndFields(end);
  return run.log->Event(end);
}

}  // namespace fedsim
