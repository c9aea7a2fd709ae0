#include "runtime/distributed.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/status_macros.h"
#include "server/coordinator/coordinator.h"
#include "server/grpc/coordinator_server.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

CoordinatorOptions OptionsFromConfig(const v1::ExperimentConfig& config) {
  const auto& d = config.distributed();
  CoordinatorOptions o;
  o.round_deadline = absl::Seconds(d.round_deadline_s());
  o.min_workers = d.min_workers();
  o.start_timeout = absl::Seconds(d.start_timeout_s());
  o.long_poll = absl::Seconds(d.long_poll_s());
  o.pin_clients = ClientsKeepState(config);
  o.max_workers = d.max_workers();
  return o;
}

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
  pid_t pid = 0;
  const int err =
      ::posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", argv[0], " (log ",
                                            log_path, "): ", std::strerror(err)));
  }
  return pid;
}

}  // namespace

absl::StatusOr<RunSummary> ServeRun(CoordinatorRun& run,
                                    const ServeOptions& options) {
  CoordinatorOptions coordinator_options = OptionsFromConfig(run.config);
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
  FEDSIM_ASSIGN_OR_RETURN(
      std::unique_ptr<CoordinatorServer> server,
      CoordinatorServer::Start(server_options, &coordinator, run.config));
  FEDSIM_RETURN_IF_ERROR(run.log->Event(
      {{"event", "listening"}, {"address", options.listen}, {"port", server->port()}}));
  if (options.on_listening) {
    if (absl::Status s = options.on_listening(server->port()); !s.ok()) {
      server->Shutdown(absl::Seconds(1));
      return s;
    }
  }
  absl::StatusOr<RunSummary> summary = coordinator.Run();
  if (summary.ok()) {
    // Workers learn that the run is over from their next poll.
    coordinator.WaitForWorkersToLeave(
        absl::Seconds(run.config.distributed().long_poll_s() + 5));
  }
  server->Shutdown(absl::Seconds(2));
  return summary;
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
  auto kill_children = [&] {
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
    children.clear();
  };

  // Round 0 waits for every local worker: a worker that joined after a
  // short run had ended would retry against a closed server until killed.
  run.config.mutable_distributed()->set_min_workers(options.workers);
  ServeOptions serve;
  serve.listen = "127.0.0.1:0";
  serve.progress = options.progress;
  serve.on_listening = [&](int port) -> absl::Status {
    for (int i = 0; i < options.workers; ++i) {
      std::vector<std::string> argv = {
          client, absl::StrCat("--server=127.0.0.1:", port),
          absl::StrCat("--name=worker-", i),
          absl::StrCat("--exit_with_parent=", ::getpid())};
      if (!data_dir.empty()) argv.push_back(absl::StrCat("--data_dir=", data_dir));
      absl::StatusOr<pid_t> pid =
          Spawn(argv, (log_dir / absl::StrCat("worker-", i, ".log")).string());
      if (!pid.ok()) {
        kill_children();
        return pid.status();
      }
      children.push_back(*pid);
    }
    return absl::OkStatus();
  };
  absl::StatusOr<RunSummary> summary = ServeRun(run, serve);
  if (!summary.ok()) {
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
  if (!failures.empty()) {
    return absl::InternalError(absl::StrCat(
        "the run completed, but ", failures.front(), " (see ", log_dir.string(),
        ")"));
  }
  return summary;
}

}  // namespace fedsim
