// File: tools/fault_injection.h
//
// The fault seams of the end-to-end tests (docs/reliability.md, "Faults";
// docs/checkpoint.md), set from the environment by the binaries only
// (library code never reads it):
//
//   FEDSIM_FAULT_KILL_AFTER_ROUND=r  the coordinator (fedsim run, fedsim
//       launch, fedsim-server) dies by SIGKILL after round (step) r's
//       metrics are written, before its checkpoint
//   FEDSIM_FAULT_DELAY_PUSH_MS=N     a worker waits N x (1 + task id mod 3)
//       ms before every push (which also reorders them)
//   FEDSIM_FAULT_DUPLICATE_PUSH=1    a worker sends every accepted push twice
//   FEDSIM_RPC_STATS=1               as --rpc_stats (not a fault; read here
//       with the others)
#ifndef FEDSIM_TOOLS_FAULT_INJECTION_H_
#define FEDSIM_TOOLS_FAULT_INJECTION_H_

#include <memory>
#include <string>

#include "client/worker/coordinator_client.h"
#include "server/coordinator/run.h"

namespace fedsim {

// Installs FEDSIM_FAULT_KILL_AFTER_ROUND as run.before_checkpoint.
void InstallCoordinatorFaults(CoordinatorRun& run);

// `client` wrapped in a FaultInjectingClient when the worker faults are set;
// `client` itself otherwise. `name`: the worker's, for its log lines.
std::unique_ptr<CoordinatorClient> WithWorkerFaults(std::unique_ptr<CoordinatorClient> client,
                                                    const std::string& name);

// FEDSIM_RPC_STATS=1 (any value but empty and 0).
bool RpcStatsRequestedByEnv();

}  // namespace fedsim

#endif  // FEDSIM_TOOLS_FAULT_INJECTION_H_
