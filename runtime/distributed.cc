#include "runtime/distributed.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/status_macros.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "runtime/launch_auth.h"
#include "common/base/stop_signal.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/rpc_stats.h"
#include "server/grpc/coordinator_server.h"

namespace fedsim {
namespace {

// A private directory under the system's temporary folder, removed with
// everything in it when the object goes.
class TempDir {
 public:
  static absl::StatusOr<TempDir> Make(const std::string& prefix) {
    std::error_code ec;
    const std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
    std::string pattern =
        absl::StrCat(ec ? std::string("/tmp") : tmp.string(), "/", prefix, "-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("cannot create a directory ", pattern, ": ",
                                              std::strerror(errno)));
    }
    return TempDir(std::move(pattern));
  }
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

namespace fs = std::filesystem;

// How long a graceful stop lets calls in flight finish.
constexpr absl::Duration kStopDrainGrace = absl::Seconds(5);


std::string SelfDirectory() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

// Starts `argv` with stdout and stderr sent to `log_path`. The child gets
// SIGTERM if this process dies, so no worker outlives its launcher.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            const std::string& log_path) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  // posix_spawn, not fork + exec: glibc starts the child with
  // clone(CLONE_VFORK) and runs no pthread_atfork handlers, whereas a fork of
  // this multi-threaded process (gRPC, OpenMP) ran gRPC's fork handlers in
  // the child, which could hang it before exec.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // Own process group: a terminal's Ctrl-C reaches only the launcher, which
  // forwards it once (a worker takes a second signal as "exit now").
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = 0;
  const int err =
      ::posix_spawn(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", argv[0], " (log ",
                                            log_path, "): ", std::strerror(err)));
  }
  return pid;
}

}  // namespace

CoordinatorOptions CoordinatorOptionsFromConfig(const v1::ExperimentConfig& config) {
  const auto& d = config.distributed();
  CoordinatorOptions o;
  o.round_deadline = absl::Seconds(d.round_deadline_s());
  o.min_workers = d.min_workers();
  o.start_timeout = absl::Seconds(d.start_timeout_s());
  o.long_poll = absl::Seconds(d.long_poll_s());
  // Client state lives in the coordinator and travels with the tasks:
  // any worker can serve any client, so nothing is pinned, except on the
  // wall clock, where a client's speed is its worker's (worker_slowdown).
  o.pin_clients = IsAsyncAlgorithm(config.algorithm().name()) &&
                  config.async().clock() == v1::AsyncConfig::CLOCK_WALL;
  o.worker_slowdown.assign(d.worker_slowdown().begin(), d.worker_slowdown().end());
  o.heartbeat_interval = absl::Seconds(d.heartbeat_interval_s());
  o.heartbeat_patience = d.heartbeat_patience();
  o.max_workers = d.max_workers();
  return o;
}

absl::StatusOr<RunSummary> ServeRun(CoordinatorRun& run,
                                    const ServeOptions& options) {
  CoordinatorOptions coordinator_options = CoordinatorOptionsFromConfig(run.config);
  if (run.resumed) {
    // Worker ids of the previous incarnation must not match new ones.
    coordinator_options.first_worker_id =
        1 + (absl::ToUnixMillis(absl::Now()) << 12);
  }
  Coordinator coordinator(coordinator_options, &run, options.progress);
  CoordinatorServer::Options server_options;
  server_options.listen = options.listen;
  server_options.max_message_bytes = run.config.distributed().max_message_bytes();
  server_options.run_id = static_cast<std::uint64_t>(absl::ToUnixNanos(absl::Now()));
  server_options.auth = options.auth;
  server_options.log = &*run.log;
  // Per-RPC statistics: one `rpc_stats` event once the server has stopped
  // (every call finished, the workers' Leave included), whatever the end.
  RpcStats rpc_stats;
  server_options.stats = &rpc_stats;
  bool rpc_stats_written = false;
  auto write_rpc_stats = [&] {
    if (rpc_stats_written) return;
    rpc_stats_written = true;
    (void)run.log->Event(rpc_stats.ToJson());
    if (options.print_rpc_stats) {
      std::fputs(rpc_stats.Table().c_str(), stderr);
    }
  };
  FEDSIM_ASSIGN_OR_RETURN(
      std::unique_ptr<CoordinatorServer> server,
      CoordinatorServer::Start(server_options, &coordinator, run.config));
  FEDSIM_RETURN_IF_ERROR(run.log->Event(
      {{"event", "listening"}, {"address", options.listen}, {"port", server->port()}}));
  if (options.on_listening) {
    if (absl::Status s = options.on_listening(server->port()); !s.ok()) {
      server->Shutdown(absl::Seconds(1));
      write_rpc_stats();
      return s;
    }
  }
  // Graceful stop (RELIABILITY 12): the first SIGTERM/SIGINT marks the
  // health service NOT_SERVING and stops the coordinator taking joins and
  // handing out tasks; Run() returns at its next tick.
  StopSignal* const stop = options.stop_signal;
  const int stop_id =
      stop == nullptr ? 0 : stop->Add([&server, &coordinator, &options] {
        server->SetNotServing();
        coordinator.RequestStop();
        if (options.on_stop) options.on_stop();
      });
  absl::StatusOr<RunSummary> summary = coordinator.Run();
  if (stop != nullptr) stop->Remove(stop_id);
  if (summary.ok()) {
    // Workers learn that the run is over from their next poll.
    coordinator.WaitForWorkersToLeave(
        absl::Seconds(run.config.distributed().long_poll_s() + 5));
  }
  if (summary.ok() || !coordinator.stop_requested()) {
    server->Shutdown(absl::Seconds(2));
    write_rpc_stats();
    return summary;
  }
  // Stopped: drain the calls in flight, then save the last completed round.
  if (options.stop_wait_for_workers > absl::ZeroDuration()) {
    coordinator.WaitForWorkersToLeave(options.stop_wait_for_workers);
  }
  const absl::Time drain_start = absl::Now();
  server->Shutdown(kStopDrainGrace);
  const double drain_s = absl::ToDoubleSeconds(absl::Now() - drain_start);
  write_rpc_stats();
  absl::StatusOr<std::string> checkpoint = coordinator.CheckpointLastCompletedRound();
  if (!checkpoint.ok()) return checkpoint.status();
  std::string newest = *checkpoint;
  if (newest.empty()) {
    if (absl::StatusOr<LoadedCheckpoint> latest = LoadLatestCheckpoint(run.log->dir());
        latest.ok()) {
      newest = latest->path;
    }
  }
  FEDSIM_RETURN_IF_ERROR(run.log->Event(
      {{"event", "shutdown"},
       {"reason", std::string(summary.status().message())},
       {"next_round", CompletedRounds(run)},
       {"drain_s", drain_s},
       {"checkpoint", newest},
       {"checkpoint_written", !checkpoint->empty()}}));
  return absl::CancelledError(absl::StrCat(
      std::string(summary.status().message()), "; resume from ",
      newest.empty() ? std::string("(no checkpoint)") : newest));
}

absl::StatusOr<RunSummary> LaunchRun(CoordinatorRun& run,
                                     const LaunchOptions& options) {
  const std::string client = options.client_binary.empty()
                                 ? (fs::path(SelfDirectory()) / "fedsim-client").string()
                                 : options.client_binary;
  if (!fs::exists(client)) {
    return absl::NotFoundError(absl::StrCat(
        "fedsim-client not found at '", client, "' (build it, or pass its path)"));
  }
  const fs::path log_dir = fs::path(run.log->dir()) / "workers";
  fs::create_directories(log_dir);
  const std::string data_dir = run.config.data().path();
  std::vector<pid_t> children;
  std::mutex children_mu;  // the stop callback runs on another thread
  auto kill_children = [&] {
    std::lock_guard<std::mutex> lock(children_mu);
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
    children.clear();
  };

  FEDSIM_ASSIGN_OR_RETURN(LaunchSecrets secrets,
                          MakeLaunchSecrets(options.auth, options.workers));
  // The prepared rows go into one file that the coordinator and every
  // worker map: the workers hold one copy between them (the page cache's)
  // instead of one each, and start without loading or partitioning.
  // Sharing is an economy, not a need: if it fails (a full temporary
  // folder), every worker loads its own copy, as without it.
  absl::StatusOr<TempDir> cache = TempDir::Make("fedsim-rows");
  absl::Status shared = cache.ok() ? ShareRowsThroughCache(*run.experiment, run.config, "",
                                                           cache->path(), /*durable=*/false)
                                   : cache.status();
  if (!shared.ok()) {
    std::fprintf(stderr, "fedsim launch: rows not shared (%s); every worker loads its own\n",
                 std::string(shared.message()).c_str());
  }

  // Round 0 waits for every local worker: a worker that joined after a
  // short run had ended would retry against a closed server until killed.
  run.config.mutable_distributed()->set_min_workers(options.workers);
  ServeOptions serve;
  serve.listen = "127.0.0.1:0";
  serve.progress = options.progress;
  serve.auth = secrets.server;
  serve.print_rpc_stats = options.print_rpc_stats;
  serve.stop_signal = options.stop_signal;
  // A graceful stop of `fedsim launch` stops its workers the same way:
  // they leave and exit 0.
  serve.stop_wait_for_workers = absl::Seconds(5);
  serve.on_stop = [&] {
    std::lock_guard<std::mutex> lock(children_mu);
    for (pid_t pid : children) ::kill(pid, SIGTERM);
  };
  serve.on_listening = [&](int port) -> absl::Status {
    for (int i = 0; i < options.workers; ++i) {
      std::vector<std::string> argv = {
          client, absl::StrCat("--server=127.0.0.1:", port),
          absl::StrCat("--name=worker-", i),
          absl::StrCat("--exit_with_parent=", ::getpid())};
      if (!data_dir.empty()) argv.push_back(absl::StrCat("--data_dir=", data_dir));
      if (shared.ok()) argv.push_back(absl::StrCat("--data_cache=", cache->path()));
      for (std::string& flag : secrets.WorkerFlags(i)) argv.push_back(std::move(flag));
      absl::StatusOr<pid_t> pid =
          Spawn(argv, (log_dir / absl::StrCat("worker-", i, ".log")).string());
      if (!pid.ok()) {
        kill_children();
        return pid.status();
      }
      std::lock_guard<std::mutex> lock(children_mu);
      children.push_back(*pid);
    }
    return absl::OkStatus();
  };
  absl::StatusOr<RunSummary> summary = ServeRun(run, serve);
  const bool stopped = options.stop_signal != nullptr && options.stop_signal->signal() != 0;
  if (!summary.ok() && !stopped) {
    kill_children();
    return summary;
  }
  // Workers exit once they hear the run is over; give them a bounded time.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  std::vector<std::string> failures;
  for (std::size_t i = 0; i < children.size(); ++i) {
    int status = 0;
    pid_t done = 0;
    while ((done = ::waitpid(children[i], &status, WNOHANG)) == 0 &&
           absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (done == 0) {
      ::kill(children[i], SIGKILL);
      ::waitpid(children[i], &status, 0);
      failures.push_back(absl::StrCat("worker-", i, " did not exit"));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failures.push_back(absl::StrCat("worker-", i, " exited with status ",
                                      WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    }
  }
  children.clear();
  if (!summary.ok()) return summary;  // stopped by a signal
  if (!failures.empty()) {
    return absl::InternalError(absl::StrCat(
        "the run completed, but ", failures.front(), " (see ", log_dir.string(),
        ")"));
  }
  return summary;
}

}  // namespace fedsim
