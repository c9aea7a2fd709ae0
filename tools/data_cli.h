// File: tools/data_cli.h
//
// `fedsim data inspect CONFIG|PATH [--json]`: what fedsim sees in a data
// set before a long run: rows, features and image layout, classes and
// label histograms, clients and the distribution of their sizes.
//
//   CONFIG (a .yaml/.yml/.json file): the data exactly as a run of that
//     config gets it: loaded, checked, normalised and partitioned.
//   PATH: a data set on disk, its format recognised from its files (an
//     .npz file; a folder of x_train.npy ...; CIFAR-10's data_batch_*.bin
//     or CIFAR-100's train.bin/test.bin; LEAF's train/ and test/; IDX
//     files); clients are those the files name, if any.
//
// Bad input: one line on stderr, exit code 2.
#ifndef FEDSIM_TOOLS_DATA_CLI_H_
#define FEDSIM_TOOLS_DATA_CLI_H_

#include <cstdio>
#include <string>
#include <vector>

namespace fedsim {

// `args` are the arguments after "data". Returns the exit code.
int DataCommand(const std::vector<std::string>& args, std::FILE* out, std::FILE* err);

}  // namespace fedsim

#endif  // FEDSIM_TOOLS_DATA_CLI_H_
