// File: runtime/embedded.h
//
// The embedded runtime: the whole experiment in one process, no network.
// Clients of a round are trained in parallel on runtime.threads threads;
// each writes its own result slot, and results are handed to the round
// engine in client-id order, so the run is bit-identical for any thread
// count and to the distributed runtime.
#ifndef FEDSIM_RUNTIME_EMBEDDED_H_
#define FEDSIM_RUNTIME_EMBEDDED_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/coordinator/progress.h"
#include "server/coordinator/run_builder.h"

namespace fedsim {

// Runs a prepared run (PrepareRun) to the end and completes its run
// directory. A run that fails midway returns the failure; everything it
// wrote before (events, metrics rows) stays in the run directory.
absl::StatusOr<RunSummary> RunEmbedded(CoordinatorRun& run,
                                       const ProgressFn& progress = nullptr);

}  // namespace fedsim

#endif  // FEDSIM_RUNTIME_EMBEDDED_H_
