#include "tools/fault_injection.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "client/worker/fault_injecting_client.h"

namespace fedsim {
namespace {

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

}  // namespace

void InstallCoordinatorFaults(CoordinatorRun& run) {
  std::int64_t r = -1;
  const char* kill_after = Env("FEDSIM_FAULT_KILL_AFTER_ROUND");
  if (kill_after == nullptr || !absl::SimpleAtoi(kill_after, &r)) return;
  run.before_checkpoint = [r](std::int64_t completed) {
    if (completed == r + 1) {
      std::fflush(nullptr);
      std::raise(SIGKILL);
    }
  };
}

std::unique_ptr<CoordinatorClient> WithWorkerFaults(std::unique_ptr<CoordinatorClient> client,
                                                    const std::string& name) {
  WorkerFaults faults;
  faults.name = name;
  if (const char* delay = Env("FEDSIM_FAULT_DELAY_PUSH_MS")) {
    (void)absl::SimpleAtoi(delay, &faults.delay_push_ms);
  }
  if (const char* dup = Env("FEDSIM_FAULT_DUPLICATE_PUSH")) {
    faults.duplicate_push = std::string(dup) == "1";
  }
  if (!faults.any()) return client;
  return std::make_unique<FaultInjectingClient>(std::move(client), faults);
}

bool RpcStatsRequestedByEnv() {
  const char* value = Env("FEDSIM_RPC_STATS");
  return value != nullptr && std::string(value) != "0";
}

}  // namespace fedsim
