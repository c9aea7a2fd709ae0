// File: runtime/console.h
//
// Terminal output of a run: a progress line per round (rewritten in place on
// a terminal, printed every few rounds otherwise) and the final summary.
#ifndef FEDSIM_RUNTIME_CONSOLE_H_
#define FEDSIM_RUNTIME_CONSOLE_H_

#include <cstdio>
#include <string>

#include "server/coordinator/progress.h"
#include "server/coordinator/run_setup.h"

namespace fedsim {

// Progress on `out` (stderr in the binaries). `quiet` prints nothing.
ProgressFn MakeConsoleProgress(std::FILE* out, bool quiet);

// One line per fact: algorithm, data, rounds, time, final and best
// metrics, model hash, run directory.
void PrintSummary(std::FILE* out, const CoordinatorRun& run,
                  const RunSummary& summary);

}  // namespace fedsim

#endif  // FEDSIM_RUNTIME_CONSOLE_H_
