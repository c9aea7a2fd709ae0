#include "server/clock/schedule.h"

#include <limits>

#include "common/base/check.h"

namespace fedsim {

ScheduleRunner::ScheduleRunner(std::unique_ptr<AsyncScheduler> scheduler,
                               std::shared_ptr<const TimeModel> model,
                               Tick horizon)
    : scheduler_(std::move(scheduler)), model_(std::move(model)), horizon_(horizon) {
  FEDSIM_CHECK(scheduler_ != nullptr && model_ != nullptr);
  const std::int64_t n = model_->num_clients();
  tasks_.resize(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k < n; ++k) Start(k, 0, 0, 0);
}

void ScheduleRunner::Start(std::int64_t client, std::int64_t version,
                           std::int64_t index, Tick now) {
  InFlight& t = tasks_[client];
  t.base_version = version;
  t.task_index = index;
  t.start = now;
  t.arrival = -1;
  ++tasks_started_;
  const Tick duration = model_->TaskTicks(client, index);
  // A result that would arrive after the end of representable time never
  // arrives.
  if (duration > std::numeric_limits<Tick>::max() - now) return;
  clock_.Schedule(ClockEvent{now + duration, ClockEventKind::kArrival, client});
}

ScheduledStep ScheduleRunner::MakeStep(Tick now,
                                       const std::vector<ClientId>& clients) {
  ScheduledStep step;
  step.version = version_;
  step.time = now;
  for (ClientId c : clients) {
    const InFlight& t = tasks_[c.value];
    FEDSIM_CHECK(t.arrival >= 0 && t.arrival <= now);
    step.contributors.push_back(
        ScheduledContribution{c, t.base_version, t.task_index, t.start, t.arrival});
  }
  ++version_;
  // The contributors restart now from the new version.
  for (ClientId c : clients) {
    Start(c.value, version_, tasks_[c.value].task_index + 1, now);
  }
  return step;
}

std::optional<ScheduledStep> ScheduleRunner::Next() {
  while (!finished_) {
    if (!deadline_scheduled_) {
      if (std::optional<Tick> d = scheduler_->NextDeadline(); d.has_value()) {
        clock_.Schedule(ClockEvent{*d, ClockEventKind::kDeadline, -1});
        deadline_scheduled_ = true;
      }
    }
    if (clock_.empty() || (horizon_ >= 0 && clock_.Peek().time > horizon_)) {
      finished_ = true;
      break;
    }
    const ClockEvent e = clock_.Pop();
    if (e.kind == ClockEventKind::kDeadline) {
      deadline_scheduled_ = false;
      return MakeStep(e.time, scheduler_->OnDeadline(e.time));
    }
    tasks_[e.client].arrival = e.time;
    if (std::optional<std::vector<ClientId>> step =
            scheduler_->OnArrival(ClientId(e.client), e.time);
        step.has_value()) {
      return MakeStep(e.time, *step);
    }
  }
  return std::nullopt;
}

std::vector<double> StepFractions(std::unique_ptr<AsyncScheduler> scheduler,
                                  std::shared_ptr<const TimeModel> model,
                                  Tick horizon, std::int64_t max_steps) {
  const auto n = static_cast<std::size_t>(model->num_clients());
  ScheduleRunner runner(std::move(scheduler), std::move(model), horizon);
  std::vector<double> counts(n, 0.0);
  std::int64_t steps = 0;
  while (steps < max_steps) {
    std::optional<ScheduledStep> step = runner.Next();
    if (!step.has_value()) break;
    ++steps;
    for (const ScheduledContribution& c : step->contributors) counts[c.client.value] += 1.0;
  }
  if (steps > 0) {
    for (double& v : counts) v /= static_cast<double>(steps);
  }
  return counts;
}

}  // namespace fedsim
