// Tests of runtime/console: the progress output of `fedsim run` and
// `fedsim launch` when stderr is not a terminal (plain lines), on a terminal
// (a bar rewritten in place) and in --json mode, written to a temporary file.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/console.h"

namespace fedsim {
namespace console_test {
namespace {

using ::testing::HasSubstr;

// Feeds `rounds` rows to a progress function writing to a temporary file
// and returns what it wrote. Round r (0-based) ends at wall time r + 1 s;
// rounds with r % 2 == 1 are evaluated (test metrics), the others not.
std::string Capture(ProgressMode mode, bool tty, int rounds) {
  std::FILE* f = std::tmpfile();
  ProgressFn progress = MakeConsoleProgress(f, mode, tty);
  for (int r = 0; r < rounds; ++r) {
    MetricsRow row;
    row.round = r;
    row.wall_time_s = r + 1.0;
    row.participants = 3;
    row.bytes_up = 80;
    row.bytes_down = 80;
    row.model_hash = "00000000000000" + std::to_string(10 + r % 90);
    if (r % 2 == 1) {
      row.test_accuracy = 0.5 + 0.01 * r;
      row.test_loss = 2.0 - 0.01 * r;
    }
    progress(row, rounds);
  }
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) out.append(buffer, n);
  std::fclose(f);
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

TEST(ConsoleTest, FormatDuration) {
  EXPECT_EQ(FormatDuration(0.0), "0s");
  EXPECT_EQ(FormatDuration(59.4), "59s");
  EXPECT_EQ(FormatDuration(65.0), "1m05s");
  EXPECT_EQ(FormatDuration(3600.0 * 2 + 7 * 60 + 30), "2h07m");
  EXPECT_EQ(FormatDuration(NAN), "0s");
}

TEST(ConsoleTest, ProgressBarFillsInProportion) {
  EXPECT_EQ(ProgressBar(0, 10, 10), "[----------] ");
  EXPECT_EQ(ProgressBar(3, 10, 10), "[###-------] ");
  EXPECT_EQ(ProgressBar(10, 10, 10), "[##########] ");
  EXPECT_EQ(ProgressBar(1, 3, 4), "[#---] ");  // floor(4/3)
}

TEST(ConsoleTest, QuietPrintsNothing) {
  EXPECT_EQ(MakeConsoleProgress(stderr, ProgressMode::kQuiet, false), nullptr);
}

TEST(ConsoleTest, PlainLinesEveryTwentiethOfTheRunWithLatestMetricsAndEta) {
  // 40 rounds: every 2 rounds, plus the first; 21 lines.
  const std::vector<std::string> lines =
      Lines(Capture(ProgressMode::kHuman, /*tty=*/false, 40));
  ASSERT_EQ(lines.size(), 21u);
  // Round 1 (r = 0): nothing evaluated yet; 1 s per round, 39 to go.
  EXPECT_EQ(lines[0], "round  1/40  1s  eta 39s");
  // Round 2 (r = 1, evaluated): accuracy 0.51, loss 1.99; 38 s to go.
  EXPECT_EQ(lines[1], "round  2/40  test_acc 0.5100  test_loss 1.9900  2s  eta 38s");
  // Round 40 (r = 39, evaluated).
  EXPECT_EQ(lines[20], "round 40/40  test_acc 0.8900  test_loss 1.6100  40s  eta 0s");
  for (const std::string& line : lines) {
    EXPECT_EQ(line.find('\r'), std::string::npos);
    EXPECT_EQ(line.find('\033'), std::string::npos);
  }
}

TEST(ConsoleTest, PlainLinesKeepTheLatestEvaluationOnUnevaluatedRounds) {
  // 3 rounds: every round printed; round 3 (r = 2) is not evaluated and
  // shows round 2's metrics.
  const std::vector<std::string> lines =
      Lines(Capture(ProgressMode::kHuman, /*tty=*/false, 3));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2], "round 3/3  test_acc 0.5100  test_loss 1.9900  3s  eta 0s");
}

TEST(ConsoleTest, TerminalRewritesOneLineInPlaceAndEndsWithNewline) {
  const std::string out = Capture(ProgressMode::kHuman, /*tty=*/true, 4);
  const std::vector<std::string> updates = absl::StrSplit(out, "\r\033[K");
  ASSERT_EQ(updates.size(), 5u);  // "" before the first, then one per round
  EXPECT_EQ(updates[0], "");
  EXPECT_EQ(updates[1], "[######------------------] round 1/4  1s  eta 3s");
  EXPECT_THAT(updates[4], HasSubstr("[########################] round 4/4"));
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
}

TEST(ConsoleTest, JsonModeWritesOneObjectPerRound) {
  const std::vector<std::string> lines =
      Lines(Capture(ProgressMode::kJson, /*tty=*/true, 4));
  ASSERT_EQ(lines.size(), 4u);
  for (int r = 0; r < 4; ++r) {
    const nlohmann::json j = nlohmann::json::parse(lines[static_cast<size_t>(r)]);
    EXPECT_EQ(j["event"], "progress");
    EXPECT_EQ(j["round"], r);
    EXPECT_EQ(j["rounds"], 4);
    EXPECT_DOUBLE_EQ(j["wall_time_s"].get<double>(), r + 1.0);
    EXPECT_DOUBLE_EQ(j["eta_s"].get<double>(), 3.0 - r);
    EXPECT_EQ(j["participants"], 3);
    EXPECT_EQ(j["bytes_up"], 80);
    EXPECT_FALSE(j.contains("epsilon_max"));  // not measured: left out
    if (r == 0) {
      EXPECT_FALSE(j.contains("test_accuracy"));
    } else if (r < 3) {
      EXPECT_DOUBLE_EQ(j["test_accuracy"].get<double>(), 0.51);  // latest: round 1
    }
  }
  const nlohmann::json last = nlohmann::json::parse(lines[3]);
  EXPECT_DOUBLE_EQ(last["test_accuracy"].get<double>(), 0.53);
  EXPECT_DOUBLE_EQ(last["test_loss"].get<double>(), 1.97);
}

}  // namespace
}  // namespace console_test
}  // namespace fedsim
