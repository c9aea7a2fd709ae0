// File: server/clock/schedule.h
//
// Drives an AsyncScheduler on the virtual clock with a TimeModel and yields
// the aggregation steps one by one. Every client starts task 0 from version
// 0 at time 0; the clients of step n start their next task from version
// n + 1 at the step's time. The schedule depends on nothing but the time
// model and the scheduler, never on the model being trained, so it can be
// run ahead (FedBuff's f_i) and tested exactly (ALGORITHMS.md §4.4, §8.4).
//
// Pure: no threads, no I/O.
#ifndef FEDSIM_SERVER_CLOCK_SCHEDULE_H_
#define FEDSIM_SERVER_CLOCK_SCHEDULE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "common/base/types.h"
#include "server/clock/time_model.h"
#include "server/clock/virtual_clock.h"
#include "server/strategy/async_fl.h"

namespace fedsim {

// One finished task taken by a step.
struct ScheduledContribution {
  ClientId client;
  std::int64_t base_version = 0;  // the version the task started from
  std::int64_t task_index = 0;    // the client's 0-based task counter
  Tick start = 0;                 // when the task started
  Tick arrival = 0;               // when its result arrived
};

struct ScheduledStep {
  std::int64_t version = 0;  // n: the step makes version n + 1
  Tick time = 0;
  std::vector<ScheduledContribution> contributors;  // sorted by client
};

class ScheduleRunner {
 public:
  // `horizon` < 0: no limit.
  ScheduleRunner(std::unique_ptr<AsyncScheduler> scheduler,
                 std::shared_ptr<const TimeModel> model, Tick horizon);

  // The next step at a time <= horizon, or nullopt when there is none.
  std::optional<ScheduledStep> Next();

  // Tasks started so far (N at the start, then one per contribution).
  std::int64_t tasks_started() const { return tasks_started_; }

 private:
  struct InFlight {
    std::int64_t base_version = 0;
    std::int64_t task_index = 0;
    Tick start = 0;
    Tick arrival = -1;  // -1 while computing
  };
  void Start(std::int64_t client, std::int64_t version, std::int64_t index,
             Tick now);
  ScheduledStep MakeStep(Tick now, const std::vector<ClientId>& clients);

  std::unique_ptr<AsyncScheduler> scheduler_;
  std::shared_ptr<const TimeModel> model_;
  Tick horizon_;
  VirtualClock clock_;
  std::vector<InFlight> tasks_;
  std::int64_t version_ = 0;
  std::int64_t tasks_started_ = 0;
  bool deadline_scheduled_ = false;
  bool finished_ = false;
};

// Runs a fresh scheduler to the horizon (or `max_steps` steps) and returns
// f_i, the fraction of steps that include each client (FedBuff's `weight`).
std::vector<double> StepFractions(std::unique_ptr<AsyncScheduler> scheduler,
                                  std::shared_ptr<const TimeModel> model, Tick horizon,
                                  std::int64_t max_steps);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_CLOCK_SCHEDULE_H_
