// File: tools/sweep_cli.h
//
// `fedsim sweep CONFIG --grid KEY=V1,V2,... [--grid ...] [--seeds 1-5]
//               [--jobs J] [--threads T] [--out DIR] [--resume] [--launch P]
//               [--set KEY=VALUE ...]`:
// the cartesian product of the grids (and seeds), one `fedsim run` (or
// `fedsim launch --workers P`) per point, J at a time, each on T threads
// (default: the machine's cores / J, so J x T does not oversubscribe it).
//
// Every point's config is checked before anything runs (a bad value exits 2
// naming the point). Each point's run directory under DIR (default
// runs/sweep-<config name>) is named by its values ("local.lr=0.1,seed=2"),
// its output goes to DIR/logs/<name>.log, and DIR/sweep.json indexes the
// points with their overrides, status (pending, running, done, failed),
// exit code and wall time, rewritten as they change. A failed point is
// reported and the others go on; the exit code is then 1. A sweep killed
// midway continues with --resume: finished points (their run_end written)
// are skipped, the others rerun with `fedsim run --resume`, which continues
// each from its newest checkpoint bit for bit (docs/checkpoint.md). Runs are
// children that die with the sweep (PR_SET_PDEATHSIG).
#ifndef FEDSIM_TOOLS_SWEEP_CLI_H_
#define FEDSIM_TOOLS_SWEEP_CLI_H_

#include <cstdio>
#include <string>
#include <vector>

namespace fedsim {

// `args` are the arguments after "sweep"; `self` is the fedsim binary the
// points run with. Returns the exit code.
int SweepCommand(const std::vector<std::string>& args, const std::string& self,
                 std::FILE* out, std::FILE* err);

}  // namespace fedsim

#endif  // FEDSIM_TOOLS_SWEEP_CLI_H_
