// File: tools/privacy_cli.h
//
// `fedsim privacy`: the RDP accountant of common/dp on the command line.
//
//   fedsim privacy --sampling-rate Q --noise-multiplier Z --steps T [--delta D]
//       prints the epsilon of T Poisson-subsampled Gaussian steps;
//   fedsim privacy --sampling-rate Q --target-epsilon E --steps T [--delta D]
//       prints the smallest noise multiplier that stays within E.
//   Options: --max-order N (integer orders 2..N, default 256),
//   --fractional-orders=true|false (Opacus' 1.1..10.9, default true),
//   --orders A,B,... (an explicit grid instead), --conversion tight|classical
//   (default tight), --json (one JSON object on stdout).
//
// Bad or missing values: one line on stderr, exit code 2.
#ifndef FEDSIM_TOOLS_PRIVACY_CLI_H_
#define FEDSIM_TOOLS_PRIVACY_CLI_H_

#include <cstdio>
#include <string>
#include <vector>

namespace fedsim {

// `args` are the arguments after "privacy". Returns the exit code.
int PrivacyCommand(const std::vector<std::string>& args, std::FILE* out,
                   std::FILE* err);

}  // namespace fedsim

#endif  // FEDSIM_TOOLS_PRIVACY_CLI_H_
