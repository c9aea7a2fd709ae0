// File: tools/cli_help.h
//
// `--help` for fedsim's binaries. Abseil's own help (Debian's 20220623)
// exits 1, lists flags by the build machine's source paths, and matches
// flags to programs by file name ("No flags matched" for fedsim-client). The
// binaries answer help themselves instead, before absl::ParseCommandLine:
// the usage, then each flag with its type, default and help, on stdout,
// exit 0, and no path of the machine the binary was built on.
#ifndef FEDSIM_TOOLS_CLI_HELP_H_
#define FEDSIM_TOOLS_CLI_HELP_H_

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace fedsim {

// True if an argument of argv[first..argc) asks for help: -h, -help,
// --help, --help=..., --helpfull, --helpshort or --helppackage (arguments
// after a lone "--" are not looked at).
bool WantsHelp(int argc, char** argv, int first = 1);

// The names of the Abseil flags defined in a source file whose path ends
// with `file_suffix` (for example "tools/fedsim_client.cc"), sorted.
std::vector<std::string> FlagsDefinedIn(absl::string_view file_suffix);

// Writes `usage` (several lines allowed), then, if `flags` is not empty,
// "flags:" and for each named flag "  --name=DEFAULT (TYPE)" and its help
// wrapped on the next lines. REQUIRES: every name is a defined flag.
void PrintHelp(std::FILE* out, absl::string_view usage,
               const std::vector<std::string>& flags);

// Removes every config override "--set KEY=VALUE" (or "--set=KEY=VALUE")
// from argv, before absl::ParseCommandLine sees them (Abseil's list flags
// split at commas, which a VALUE such as [0.1, 0.2] holds), and returns
// them in order. A trailing "--set" without a value is returned as "" (an
// error for LoadConfigFile to report).
std::vector<std::string> TakeConfigOverrides(int& argc, char** argv);

}  // namespace fedsim

#endif  // FEDSIM_TOOLS_CLI_HELP_H_
