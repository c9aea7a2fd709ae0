// File: tests/testing/run_dir.h
//
// Reading a run directory back in tests: whole files, metrics.csv columns
// (found by their header, so new columns never break a test), the
// model_hash column and events.jsonl records of one kind. Header-only; every
// test binary links fedsim_testing, which puts the source tree on the include
// path.
#ifndef FEDSIM_TESTS_TESTING_RUN_DIR_H_
#define FEDSIM_TESTS_TESTING_RUN_DIR_H_

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fedsim::test {

// The whole file; a failed expectation (and "") if it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One column of DIR/metrics.csv, found by its header; a row too short for it
// gives "<missing>" (and a failed expectation).
inline std::vector<std::string> Column(const std::string& dir, const std::string& name) {
  std::vector<std::string> out;
  const std::vector<std::string> lines =
      absl::StrSplit(ReadFile(dir + "/metrics.csv"), '\n', absl::SkipEmpty());
  if (lines.empty()) return out;
  const std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  const auto col = std::find(header.begin(), header.end(), name);
  EXPECT_NE(col, header.end()) << dir << "/metrics.csv has no column " << name;
  if (col == header.end()) return out;
  const auto index = static_cast<std::size_t>(col - header.begin());
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string> cols = absl::StrSplit(lines[i], ',');
    EXPECT_GT(cols.size(), index) << dir << "/metrics.csv row " << i;
    out.push_back(cols.size() > index ? cols[index] : "<missing>");
  }
  return out;
}

// The model_hash column: equal vectors mean bit-identical runs.
inline std::vector<std::string> Hashes(const std::string& dir) {
  return Column(dir, "model_hash");
}

// The records of DIR/events.jsonl whose "event" is `kind` ("" = all).
inline std::vector<nlohmann::json> Events(const std::string& dir, const std::string& kind) {
  std::vector<nlohmann::json> out;
  std::istringstream in(ReadFile(dir + "/events.jsonl"));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(record.is_discarded()) << dir << "/events.jsonl: " << line;
    if (kind.empty() || record.value("event", "") == kind) out.push_back(std::move(record));
  }
  return out;
}

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_RUN_DIR_H_
