#include "server/coordinator/engine.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/kernels/vector_ops.h"
#include "common/codec/flat_bytes.h"
#include "server/coordinator/evaluator.h"

namespace fedsim {

Engine::Engine(EngineInputs inputs, EvalOptions eval, std::int64_t incarnation)
    : in_(std::move(inputs)), eval_(eval), incarnation_(incarnation) {}

void Engine::LogEvent(const nlohmann::json& event) const {
  if (in_.log == nullptr) return;
  // A lost event line is reported but does not stop the run: the metrics
  // and the model are what the run is for.
  if (absl::Status s = in_.log->Event(event); !s.ok()) {
    std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
  }
}

absl::Status Engine::Reject(const ClientResult& r, absl::Status status, bool task_open,
                            const char* unit_key, std::int64_t unit) {
  ++tally_.rejected_pushes;
  if (in_.log == nullptr) return status;
  const std::string code = absl::StatusCodeToString(status.code());
  const nlohmann::json event = {{"event", "result_rejected"},
                                {unit_key, unit},
                                {"task", r.task.value},
                                {"client", r.client.value},
                                {"code", code},
                                {"reason", std::string(status.message())}};
  // The rejection of an open task's result ends the task: at most one per
  // task, always written. Pushes for unknown, stale or given-up tasks can
  // come at will: rate limited per status code; the tally counts every one.
  const absl::Status logged =
      task_open ? in_.log->Event(event)
                : in_.log->LimitedEvent(absl::StrCat("result_rejected ", code), event);
  if (!logged.ok()) std::fprintf(stderr, "warning: %s\n", std::string(logged.message()).c_str());
  return status;
}

absl::Status Engine::CheckIssued(const ClientResult& r, const char* unit_key,
                                 std::int64_t unit) {
  if (absl::Status s = CheckTaskIssued(r.task, incarnation_, next_task_id_); !s.ok()) {
    return Reject(r, std::move(s), /*task_open=*/false, unit_key, unit);
  }
  return absl::OkStatus();
}

absl::Status Engine::Admit(ClientResult& r, const char* unit_key, std::int64_t unit,
                           Tick now,
                           const std::function<absl::Status(const ClientResult&)>& extra) {
  if (in_.adversary != nullptr) in_.adversary->Apply(r.client.value, unit, r.update);
  const std::int64_t n_k = in_.client_sizes[static_cast<std::size_t>(r.client.value)];
  const std::string where = absl::StrCat(unit_key, " ", unit);
  if (absl::Status s = CheckUpdate(where, r, static_cast<std::int64_t>(model().size()), n_k);
      !s.ok()) {
    return Reject(r, std::move(s), /*task_open=*/true, unit_key, unit);
  }
  if (extra) {
    if (absl::Status s = extra(r); !s.ok()) {
      return Reject(r, std::move(s), /*task_open=*/true, unit_key, unit);
    }
  }
  if (absl::Status s = CheckNormBound(in_.validation, where, r); !s.ok()) {
    // Final (the same push would fail again): the task closes now, so the
    // round does not wait for its deadline.
    const TaskId task = r.task;
    absl::Status rejected = Reject(r, std::move(s), /*task_open=*/true, unit_key, unit);
    Drop(task, std::string(rejected.message()), now);
    return rejected;
  }
  if (const NormBoundOutcome nb = ApplyNormBound(in_.validation, r.update); nb.changed) {
    LogEvent({{"event", in_.validation.action == NormBoundAction::kZero ? "update_zeroed"
                                                                         : "update_clipped"},
              {unit_key, unit},
              {"task", r.task.value},
              {"client", r.client.value},
              {"norm", nb.norm},
              {"max_update_norm", in_.validation.max_update_norm}});
  }
  return absl::OkStatus();
}

void EvaluateInto(const EngineInputs& inputs, const EvalOptions& options,
                  const FlatVector& model, bool evaluate, MetricsRow& row) {
  // LSA experiments have no objective: their metric is dist_to_opt.
  if (inputs.objective != nullptr && evaluate) {
    const Evaluation test = EvaluateModel(*inputs.objective, *inputs.test, model,
                                          options.threads);
    row.test_loss = test.loss;
    row.test_accuracy = test.accuracy;
    if (options.train_loss) {
      row.train_loss =
          EvaluateModel(*inputs.objective, *inputs.train, model, options.threads).loss;
    }
  }
  if (inputs.optimum.has_value()) {
    row.dist_to_opt = std::sqrt(SquaredNorm(model - *inputs.optimum));
  }
  row.model_hash = ModelHash(model);
}

absl::StatusOr<MetricsRow> Engine::Publish(const StepReport& report,
                                           double wall_time_s) const {
  MetricsRow row = report.row;
  row.wall_time_s = wall_time_s;
  EvaluateInto(in_, eval_, *report.model, report.evaluate, row);
  nlohmann::json event = report.event;
  event["model_hash"] = row.model_hash;
  if (report.event_wall_time) event["wall_time_s"] = wall_time_s;
  LogEvent(event);
  for (const nlohmann::json& after : report.events_after) LogEvent(after);
  if (in_.log != nullptr) FEDSIM_RETURN_IF_ERROR(in_.log->Metrics(row));
  return row;
}

}  // namespace fedsim
