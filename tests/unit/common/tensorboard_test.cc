// Tests of common/runlog/tensorboard: CRC-32C against the published check
// values, the TFRecord framing, and the event file a RunLog writes with
// EnableTensorBoard, read back record by record (tests/report/
// tensorboard_test.py reads it with TensorBoard's own reader as well).
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/runlog/run_log.h"
#include "common/runlog/tensorboard.h"
#include "gtest/gtest.h"
#include "tensorboard/event.pb.h"

namespace fedsim {
namespace tensorboard_test {
namespace {

namespace fs = std::filesystem;

std::uint64_t LittleEndian(const std::string& bytes, size_t offset, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(bytes[offset + static_cast<size_t>(i)]);
  }
  return v;
}

// Splits a TFRecord file into payloads, checking both CRCs of every record.
std::vector<std::string> ReadRecords(const std::string& bytes) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    EXPECT_LE(pos + 12, bytes.size());
    const std::uint64_t length = LittleEndian(bytes, pos, 8);
    EXPECT_EQ(LittleEndian(bytes, pos + 8, 4),
              MaskCrc32c(Crc32c(bytes.substr(pos, 8))));
    const std::string payload = bytes.substr(pos + 12, length);
    EXPECT_EQ(LittleEndian(bytes, pos + 12 + length, 4), MaskCrc32c(Crc32c(payload)));
    out.push_back(payload);
    pos += 12 + length + 4;
  }
  EXPECT_EQ(pos, bytes.size());
  return out;
}

TEST(TensorBoardTest, Crc32cMatchesPublishedCheckValues) {
  // The CRC catalogue's check value for CRC-32C, and RFC 3720 B.4's vectors.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(TensorBoardTest, MaskRotatesRightBy15AndAddsTheConstant) {
  EXPECT_EQ(MaskCrc32c(0u), 0xa282ead8u);
  // 1 rotated right by 15 is 1 << 17.
  EXPECT_EQ(MaskCrc32c(1u), (1u << 17) + 0xa282ead8u);
  EXPECT_EQ(MaskCrc32c(0x8000u), 1u + 0xa282ead8u);
}

TEST(TensorBoardTest, RecordFramesLengthPayloadAndCrcs) {
  const std::string record = TfRecord("abc");
  ASSERT_EQ(record.size(), 8u + 4u + 3u + 4u);
  EXPECT_EQ(LittleEndian(record, 0, 8), 3u);
  EXPECT_EQ(record.substr(12, 3), "abc");
  EXPECT_EQ(LittleEndian(record, 15, 4), MaskCrc32c(Crc32c("abc")));
  EXPECT_EQ(LittleEndian(record, 8, 4),
            MaskCrc32c(Crc32c(std::string("\x03\0\0\0\0\0\0\0", 8))));
}

TEST(TensorBoardTest, RunLogWritesOneEventPerRowWithTheMeasuredMetrics) {
  const fs::path dir = fs::path(::testing::TempDir()) / "fedsim_tensorboard_test";
  fs::remove_all(dir);
  auto log = RunLog::Create(dir.string());
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->EnableTensorBoard().ok());
  MetricsRow r0;
  r0.round = 0;
  r0.wall_time_s = 0.5;
  r0.test_loss = 1.25;
  r0.test_accuracy = 0.75;
  r0.participants = 3;
  r0.bytes_up = 240;
  r0.bytes_down = 240;
  MetricsRow r1 = r0;
  r1.round = 1;
  r1.wall_time_s = 1.0;
  r1.test_loss = NAN;  // not evaluated this round: no scalar
  r1.test_accuracy = NAN;
  r1.epsilon_max = 2.5;
  ASSERT_TRUE((*log)->Metrics(r0).ok());
  ASSERT_TRUE((*log)->Metrics(r1).ok());

  std::ifstream in(dir / "events.out.tfevents.fedsim", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  const std::vector<std::string> records = ReadRecords(bytes);
  ASSERT_EQ(records.size(), 3u);
  tensorboard::Event version;
  ASSERT_TRUE(version.ParseFromString(records[0]));
  EXPECT_EQ(version.file_version(), "brain.Event:2");
  EXPECT_GT(version.wall_time(), 1.5e9);  // seconds since the Unix epoch

  tensorboard::Event e0, e1;
  ASSERT_TRUE(e0.ParseFromString(records[1]));
  ASSERT_TRUE(e1.ParseFromString(records[2]));
  EXPECT_EQ(e0.step(), 0);
  EXPECT_EQ(e1.step(), 1);
  std::vector<std::string> tags0, tags1;
  for (const auto& v : e0.summary().value()) tags0.push_back(v.tag());
  for (const auto& v : e1.summary().value()) tags1.push_back(v.tag());
  EXPECT_EQ(tags0, (std::vector<std::string>{"wall_time_s", "test_loss",
                                             "test_accuracy", "participants",
                                             "bytes_up", "bytes_down"}));
  EXPECT_EQ(tags1, (std::vector<std::string>{"wall_time_s", "participants",
                                             "bytes_up", "bytes_down",
                                             "epsilon_max"}));
  EXPECT_EQ(e0.summary().value(1).simple_value(), 1.25f);
  EXPECT_EQ(e0.summary().value(2).simple_value(), 0.75f);
  EXPECT_EQ(e1.summary().value(4).simple_value(), 2.5f);
  fs::remove_all(dir);
}

// Issue 18: a resumed run rewrites the one event file without the rounds it
// redoes (and without a record cut short by the crash), then appends: every
// reader sees each round once, whether or not it purges orphaned data.
TEST(TensorBoardTest, ResumedRunKeepsOneFileWithEachRoundOnce) {
  const fs::path dir = fs::path(::testing::TempDir()) / "fedsim_tensorboard_resumed";
  fs::remove_all(dir);
  {
    auto log = RunLog::Create(dir.string());
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->EnableTensorBoard().ok());
    for (std::int64_t round = 0; round < 6; ++round) {
      MetricsRow r;
      r.round = round;
      r.wall_time_s = 1.0 + static_cast<double>(round);
      ASSERT_TRUE((*log)->Metrics(r).ok());
    }
  }
  // The crash cut the last record short.
  const fs::path file = dir / "events.out.tfevents.fedsim";
  fs::resize_file(file, fs::file_size(file) - 3);
  {
    auto log = RunLog::Reopen(dir.string(), 4);
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->EnableTensorBoard(/*resumed_from=*/4).ok());
    for (std::int64_t round = 4; round < 7; ++round) {
      MetricsRow r;
      r.round = round;
      r.wall_time_s = 100.0 + static_cast<double>(round);
      ASSERT_TRUE((*log)->Metrics(r).ok());
    }
  }
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().find("tfevents") != std::string::npos) {
      files.push_back(entry.path().filename().string());
    }
  }
  EXPECT_EQ(files, std::vector<std::string>{"events.out.tfevents.fedsim"});
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  const std::vector<std::string> records = ReadRecords(bytes);
  ASSERT_EQ(records.size(), 1u + 7u);  // file_version, rounds 0..6 once each
  tensorboard::Event version;
  ASSERT_TRUE(version.ParseFromString(records[0]));
  EXPECT_EQ(version.file_version(), "brain.Event:2");
  for (std::int64_t round = 0; round < 7; ++round) {
    tensorboard::Event e;
    ASSERT_TRUE(e.ParseFromString(records[static_cast<std::size_t>(round) + 1]));
    EXPECT_EQ(e.step(), round);
    EXPECT_FALSE(e.has_session_log());
    // Rounds 0-3 from the first run, 4-6 from the resumed one.
    EXPECT_EQ(e.summary().value(0).tag(), "wall_time_s");
    EXPECT_EQ(e.summary().value(0).simple_value(),
              static_cast<float>(round < 4 ? 1.0 + round : 100.0 + round));
  }
  // Nothing left of the rewrite.
  EXPECT_FALSE(fs::exists(dir / "events.out.tfevents.fedsim.tmp"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tensorboard_test
}  // namespace fedsim
