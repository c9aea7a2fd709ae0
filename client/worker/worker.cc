#include "client/worker/worker.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "algorithms/registry.h"
#include "common/base/status_macros.h"
#include "common/config/experiment.h"
#include "common/data/numpy_format.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {
namespace {

bool Retryable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
}

// Refused credentials (docs/security.md): retrying cannot help. A
// PERMISSION_DENIED without the "auth:" prefix is the coordinator's own
// refusal of one result (a task reassigned elsewhere) and is not fatal.
bool IsAuthFailure(const absl::Status& s) {
  return absl::IsUnauthenticated(s) ||
         (absl::IsPermissionDenied(s) && absl::StartsWith(s.message(), "auth:"));
}

// Capped exponential backoff with +-20% jitter. The jitter only spreads
// reconnects in time; it never reaches anything that affects results.
class Backoff {
 public:
  explicit Backoff(const WorkerOptions& o)
      : initial_(o.initial_backoff), max_(o.max_backoff), next_(o.initial_backoff),
        jitter_(std::random_device{}()) {}
  void Wait() {
    std::uniform_real_distribution<double> u(0.8, 1.2);
    absl::SleepFor(next_ * u(jitter_));
    next_ = std::min(max_, next_ * 1.6);
  }
  void Reset() { next_ = initial_; }

 private:
  absl::Duration initial_, max_, next_;
  std::mt19937_64 jitter_;
};

void Log(const std::string& name, const std::string& message) {
  std::fprintf(stderr, "[%s] %s\n", name.c_str(), message.c_str());
}

class WorkerLoop {
 public:
  WorkerLoop(const WorkerOptions& options, CoordinatorClient& client)
      : options_(options), client_(client) {}

  absl::Status JoinWithRetry() {
    Backoff backoff(options_);
    const absl::Time give_up = absl::Now() + options_.max_unreachable;
    while (true) {
      absl::StatusOr<JoinReply> reply = client_.Join(options_.name);
      if (reply.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        worker_ = reply->worker;
        slowdown_ = reply->slowdown;
        if (experiment_ == nullptr) {
          config_ = reply->config;
          absl::StatusOr<Experiment> exp = BuildExperiment(
              config_, options_.data_dir, /*keep_row_order=*/false, options_.data_cache);
          if (!exp.ok()) return AnnotateStatus(exp.status(), "worker setup");
          if (!exp->data_note.empty()) Log(options_.name, exp->data_note);
          absl::StatusOr<const Algorithm*> algorithm =
              FindAlgorithm(config_.algorithm().name());
          if (!algorithm.ok()) return AnnotateStatus(algorithm.status(), "worker setup");
          algorithm_ = *algorithm;
          experiment_ = std::make_unique<Experiment>(*std::move(exp));
          dim_ = experiment_->num_parameters();
          stateful_ = ClientsKeepState(config_);
          layout_ = ClientStateLayoutOf(config_, dim_);
        }
        Log(options_.name,
            absl::StrCat("joined as worker ", worker_.value,
                         slowdown_ > 1.0 ? absl::StrCat(" (slowdown ", slowdown_, ")") : ""));
        return absl::OkStatus();
      }
      if (!Retryable(reply.status()) || absl::Now() >= give_up) {
        return AnnotateStatus(reply.status(), "join");
      }
      backoff.Wait();
    }
  }

  // Rejoins unless another loop already did (the worker id changed).
  absl::Status Rejoin(WorkerId stale) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (worker_ != stale) return absl::OkStatus();
    }
    return JoinWithRetry();
  }

  WorkerId worker() {
    std::lock_guard<std::mutex> lock(mu_);
    return worker_;
  }

  bool Stopping() const {
    return options_.stop != nullptr && options_.stop->load();
  }

  // Sends a Heartbeat every distributed.heartbeat_interval_s until
  // StopHeartbeats(). Errors are ignored: the loops see them on their next
  // call (kNotFound there makes them join again).
  void HeartbeatLoop() {
    const absl::Duration interval =
        absl::Seconds(config_.distributed().heartbeat_interval_s());
    std::unique_lock<std::mutex> lock(hb_mu_);
    while (!hb_cv_.wait_for(lock, absl::ToChronoMilliseconds(interval),
                            [&] { return hb_stop_; })) {
      lock.unlock();
      (void)client_.Heartbeat(worker());
      lock.lock();
    }
  }
  void StopHeartbeats() {
    std::lock_guard<std::mutex> lock(hb_mu_);
    hb_stop_ = true;
    hb_cv_.notify_all();
  }

  absl::Status Loop() {
    Backoff backoff(options_);
    absl::Time unreachable_since = absl::InfiniteFuture();
    while (!finished_.load() && !Stopping()) {
      const WorkerId me = worker();
      absl::StatusOr<PullResult> pulled = client_.PullTask(
          me, absl::Seconds(config_.distributed().long_poll_s()), dim_);
      if (Stopping()) break;
      if (!pulled.ok()) {
        if (absl::IsNotFound(pulled.status())) {
          FEDSIM_RETURN_IF_ERROR(Rejoin(me));
          continue;
        }
        if (!Retryable(pulled.status())) return AnnotateStatus(pulled.status(), "pull");
        const absl::Time now = absl::Now();
        if (unreachable_since == absl::InfiniteFuture()) unreachable_since = now;
        if (now - unreachable_since > options_.max_unreachable) {
          return AnnotateStatus(pulled.status(), "coordinator unreachable");
        }
        backoff.Wait();
        continue;
      }
      unreachable_since = absl::InfiniteFuture();
      backoff.Reset();
      if (pulled->run_finished) {
        finished_.store(true);
        break;
      }
      if (!pulled->task.has_value()) {
        if (pulled->retry_after_ms > 0) {
          absl::SleepFor(absl::Milliseconds(pulled->retry_after_ms));
        }
        continue;
      }
      const Task& task = *pulled->task;
      // Stateful algorithms: the task carries the client's state (owned by
      // the coordinator); the result takes the updated state back.
      std::optional<ClientState> state;
      if (stateful_) {
        absl::Status bad;
        if (task.client_state == nullptr) {
          bad = absl::InvalidArgumentError(absl::StrCat(
              "task ", task.id.value, " carries no client_state; this algorithm keeps "
              "client state"));
        } else {
          bad = CheckClientState(*task.client_state, layout_,
                                 absl::StrCat("task ", task.id.value));
        }
        if (!bad.ok()) {
          // The coordinator times the task out at the round deadline.
          Log(options_.name, std::string(bad.message()));
          continue;
        }
        state = *task.client_state;
      }
      const absl::Time started = absl::Now();
      absl::StatusOr<ClientResult> result = RunTask(
          *algorithm_, *experiment_, config_.seed(), task, state.has_value() ? &*state : nullptr);
      SlowDown(absl::Now() - started);
      if (!result.ok()) {
        // The coordinator times the task out at the round deadline.
        Log(options_.name, absl::StrCat("task ", task.id.value, " (client ",
                                        task.client.value, ") failed: ",
                                        result.status().message()));
        continue;
      }
      if (Stopping()) break;  // the coordinator re-issues it after Leave
      if (state.has_value()) result->client_state = *std::move(state);
      FEDSIM_RETURN_IF_ERROR(PushWithRetry(*result));
    }
    return absl::OkStatus();
  }

  // distributed.worker_slowdown: a worker of factor f takes f times as long
  // per task, sleeping (f - 1) x the training time (cut short by a stop).
  void SlowDown(absl::Duration training) {
    double factor = 1.0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      factor = slowdown_;
    }
    if (factor <= 1.0) return;
    const absl::Time until = absl::Now() + training * (factor - 1.0);
    while (!Stopping()) {
      const absl::Duration left = until - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      absl::SleepFor(std::min(left, absl::Milliseconds(100)));
    }
  }

  absl::Status PushWithRetry(const ClientResult& result) {
    Backoff backoff(options_);
    const absl::Time give_up = absl::Now() + options_.max_unreachable;
    while (true) {
      const WorkerId me = worker();
      absl::StatusOr<bool> pushed = client_.PushResult(me, result);
      if (pushed.ok()) return absl::OkStatus();
      if (Stopping()) return absl::OkStatus();
      if (absl::IsNotFound(pushed.status()) &&
          absl::StrContains(pushed.status().message(), "worker")) {
        FEDSIM_RETURN_IF_ERROR(Rejoin(me));
        continue;
      }
      if (Retryable(pushed.status()) && absl::Now() < give_up) {
        backoff.Wait();
        continue;
      }
      if (Retryable(pushed.status()) || IsAuthFailure(pushed.status())) {
        return AnnotateStatus(pushed.status(), "push");
      }
      // Stale, rejected or foreign: the coordinator logged why; move on.
      Log(options_.name, absl::StrCat("result of task ", result.task.value,
                                      " not accepted: ",
                                      pushed.status().ToString()));
      return absl::OkStatus();
    }
  }

  // For rows read in place from x_train.npy (data.source = npy): how much
  // of its mapping this process has paged in, i.e. the rows of the clients
  // it trained (docs/data.md, "Memory").
  void LogDataResidency() {
    if (experiment_ == nullptr || experiment_->data.train.shared == nullptr ||
        config_.data().source() != v1::DataConfig::SOURCE_NPY) {
      return;
    }
    const SharedRows& rows = *experiment_->data.train.shared;
    absl::StatusOr<std::int64_t> resident = MappedResidentBytes(rows.data);
    if (!resident.ok()) return;
    Log(options_.name,
        absl::StrCat("data: ", *resident, " of ", rows.rows * rows.cols * 4,
                     " bytes of x_train.npy's rows resident in this process"));
  }

  void LeaveQuietly() {
    if (absl::Status s = client_.Leave(worker()); !s.ok() && !absl::IsNotFound(s)) {
      Log(options_.name, absl::StrCat("leave: ", s.ToString()));
    }
  }

 private:
  const WorkerOptions& options_;
  CoordinatorClient& client_;
  std::mutex mu_;
  WorkerId worker_ ABSL_GUARDED_BY(mu_);
  double slowdown_ ABSL_GUARDED_BY(mu_) = 1.0;
  // Set once by the first successful join, read-only afterwards.
  v1::ExperimentConfig config_;
  std::unique_ptr<Experiment> experiment_;
  const Algorithm* algorithm_ = nullptr;  // the config's, set with experiment_
  std::int64_t dim_ = 0;
  bool stateful_ = false;
  ClientStateLayout layout_;
  std::atomic<bool> finished_{false};
  std::mutex hb_mu_;
  std::condition_variable hb_cv_;
  bool hb_stop_ = false;
};

}  // namespace

absl::Status RunWorker(const WorkerOptions& options, CoordinatorClient& client) {
  UseFixedEigenBlocking();
  WorkerLoop loop(options, client);
  FEDSIM_RETURN_IF_ERROR(loop.JoinWithRetry());
  std::thread heartbeats([&] { loop.HeartbeatLoop(); });
  const int parallel = std::max(1, options.parallel);
  std::vector<absl::Status> statuses(parallel);
  std::vector<std::thread> threads;
  for (int i = 1; i < parallel; ++i) {
    threads.emplace_back([&, i] { statuses[i] = loop.Loop(); });
  }
  statuses[0] = loop.Loop();
  for (auto& t : threads) t.join();
  loop.StopHeartbeats();
  heartbeats.join();
  loop.LeaveQuietly();
  loop.LogDataResidency();
  for (const absl::Status& s : statuses) FEDSIM_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

}  // namespace fedsim
