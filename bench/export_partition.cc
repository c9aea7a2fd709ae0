// File: bench/export_partition.cc
//
// Writes the client split fedsim builds for a config, so that a baseline in
// another framework (bench/flower_quickstart.py) trains on exactly the same
// rows: line k holds client k's training-row indices (into the training
// file, in fedsim's order), separated by spaces.
//
//   bench_export_partition CONFIG OUT
//
// With --smoke (bench/run.sh --smoke) it only checks that the config builds.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "common/config/config.h"
#include "common/config/experiment.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: bench_export_partition CONFIG OUT\n";
    return 2;
  }
  auto config = fedsim::LoadConfigFile(argv[1]);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 2;
  }
  // The files' row order: the baselines read the data files themselves.
  auto experiment = fedsim::BuildExperiment(*config, "", /*keep_row_order=*/true);
  if (!experiment.ok()) {
    std::cerr << experiment.status().message() << "\n";
    return 2;
  }
  std::ofstream out(argv[2]);
  for (const auto& rows : experiment->data.client_rows) {
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (i > 0) out << ' ';
      out << rows[i];
    }
    out << '\n';
  }
  out.close();
  if (!out) {
    std::cerr << "bench_export_partition: cannot write " << argv[2] << "\n";
    return 1;
  }
  return 0;
}
