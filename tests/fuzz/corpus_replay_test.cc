// Replays the checked-in fuzz corpora (tests/fuzz/corpus/<target>/) through
// the same target functions libFuzzer runs (fuzz_targets.h), in the normal
// g++ build: a regression test for every input the fuzzers kept. Fails if a
// target's corpus folder is missing or empty.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_targets.h"

namespace fedsim::fuzz {

// Test names and logs show the target's name, not its bytes.
void PrintTo(const NamedTarget& target, std::ostream* os) { *os << target.name; }

namespace {

namespace fs = std::filesystem;

class CorpusReplayTest : public ::testing::TestWithParam<NamedTarget> {};

TEST_P(CorpusReplayTest, EveryCorpusFileReplays) {
  const NamedTarget target = GetParam();
  const fs::path dir = fs::path(FEDSIM_SOURCE_DIR) / "tests/fuzz/corpus" / target.name;
  ASSERT_TRUE(fs::is_directory(dir)) << "missing corpus folder " << dir;
  int files = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    // Aborts (failing the test) on a violated invariant.
    EXPECT_EQ(target.fn(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                        bytes.size()),
              0)
        << entry.path();
    ++files;
  }
  std::printf("corpus %s: %d files replayed\n", target.name, files);
  RecordProperty("files_replayed", files);
  EXPECT_GT(files, 0) << "empty corpus folder " << dir;
}

INSTANTIATE_TEST_SUITE_P(
    Targets, CorpusReplayTest, ::testing::ValuesIn(kTargets),
    [](const ::testing::TestParamInfo<NamedTarget>& param) {
      std::string name = param.param.name;
      return name;
    });

}  // namespace
}  // namespace fedsim::fuzz
