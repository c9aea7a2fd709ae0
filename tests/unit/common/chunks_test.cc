// common/codec/chunks.h: the chunk rules both sides check, and the
// distributed.* limit keys (defaults and one-line validation errors).
#include "common/codec/chunks.h"

#include <string>

#include "absl/strings/match.h"
#include "common/codec/flat_bytes.h"
#include "common/config/config.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace chunks_test {
namespace {

TEST(ChunksTest, ChunkLengthIsFullButTheLast) {
  EXPECT_EQ(ChunkLength(9168, 4096, 0), 4096);
  EXPECT_EQ(ChunkLength(9168, 4096, 4096), 4096);
  EXPECT_EQ(ChunkLength(9168, 4096, 8192), 976);
  EXPECT_EQ(ChunkLength(9168, 4096, 9168), 0);
  EXPECT_EQ(ChunkLength(100, 4096, 0), 100);
}

TEST(ChunksTest, OffsetMustBeInRangeAndAligned) {
  EXPECT_TRUE(CheckChunkOffset("X", 9168, 4096, 8192).ok());
  for (std::int64_t bad : {std::int64_t{-4096}, std::int64_t{1}, std::int64_t{9168},
                           std::int64_t{12288}}) {
    absl::Status s = CheckChunkOffset("X", 9168, 4096, bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message(), "X.offset = " + std::to_string(bad) +
                               "; must be in [0, 9168) and a multiple of "
                               "chunk_bytes = 4096");
  }
}

TEST(ChunksTest, TruncatedChunkAndBadChecksumAreRejected) {
  const std::string full(4096, 'a');
  EXPECT_TRUE(CheckChunk("C", 9168, 4096, 0, full, Sha256Digest(full)).ok());
  const std::string last(976, 'b');
  EXPECT_TRUE(CheckChunk("C", 9168, 4096, 8192, last, Sha256Digest(last)).ok());

  const std::string part = full.substr(0, 4095);
  absl::Status s = CheckChunk("C", 9168, 4096, 0, part, Sha256Digest(part));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "C.data is 4095 bytes at offset 0; must be 4096 "
                         "(min(chunk_bytes = 4096, size 9168 - offset)): truncated chunk");
  // Longer than the rule: rejected too, without "truncated".
  s = CheckChunk("C", 9168, 4096, 8192, full, Sha256Digest(full));
  EXPECT_EQ(s.message(), "C.data is 4096 bytes at offset 8192; must be 976 "
                         "(min(chunk_bytes = 4096, size 9168 - offset))");

  std::string flipped = full;
  flipped[17] ^= 1;
  s = CheckChunk("C", 9168, 4096, 0, flipped, Sha256Digest(full));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.message(), "C.sha256 = " + DigestPrefix(Sha256Digest(full))));
  EXPECT_TRUE(absl::EndsWith(s.message(), "...): bad checksum"));
  s = CheckChunk("C", 9168, 4096, 0, full, "");
  EXPECT_TRUE(absl::StartsWith(s.message(), "C.sha256 = (none)..."));
}

TEST(ChunksTest, AssembledMustMatchSizeAndDigest) {
  const std::string bytes(9168, 'z');
  EXPECT_TRUE(CheckAssembled("R", bytes, 9168, Sha256Digest(bytes)).ok());
  absl::Status s = CheckAssembled("R", bytes, 9176, Sha256Digest(bytes));
  EXPECT_EQ(s.message(), "R: assembled 9168 bytes; must equal ChunkRef.size = 9176");
  s = CheckAssembled("R", bytes, 9168, Sha256Digest("x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "must be the SHA-256 of the assembled 9168 bytes"));
}

TEST(ChunksTest, DistributedLimitDefaultsAndRules) {
  absl::StatusOr<v1::ExperimentConfig> c = LoadConfigText("");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& d = c->distributed();
  EXPECT_EQ(d.chunk_bytes(), 1 << 20);
  EXPECT_EQ(d.max_workers(), 1000);
  EXPECT_EQ(d.max_inflight_per_worker(), 16);
  EXPECT_EQ(d.max_upload_buffer_bytes(), std::int64_t{1} << 30);
  EXPECT_EQ(d.max_concurrent_streams(), 100);
  EXPECT_EQ(d.resource_quota_bytes(), std::int64_t{2} << 30);
  const struct {
    const char* yaml;
    const char* key;
  } bad[] = {
      {"distributed: {chunk_bytes: 1023}", "distributed.chunk_bytes = 1023"},
      {"distributed: {max_message_bytes: 1048576, chunk_bytes: 524289}",
       "distributed.chunk_bytes = 524289"},
      {"distributed: {max_workers: 0}", "distributed.max_workers = 0"},
      {"distributed: {max_inflight_per_worker: 0}",
       "distributed.max_inflight_per_worker = 0"},
      {"distributed: {max_upload_buffer_bytes: 1000}",
       "distributed.max_upload_buffer_bytes = 1000"},
      {"distributed: {max_concurrent_streams: 0}",
       "distributed.max_concurrent_streams = 0"},
      {"distributed: {resource_quota_bytes: 1}", "distributed.resource_quota_bytes = 1"},
  };
  for (const auto& b : bad) {
    absl::StatusOr<v1::ExperimentConfig> r = LoadConfigText(b.yaml);
    ASSERT_FALSE(r.ok()) << b.yaml;
    EXPECT_TRUE(absl::StrContains(r.status().message(), b.key)) << r.status();
    EXPECT_FALSE(absl::StrContains(r.status().message(), "\n"));
  }
  // With the 1 MiB minimum message the default chunk is half of it.
  absl::StatusOr<v1::ExperimentConfig> small =
      LoadConfigText("distributed: {max_message_bytes: 1048576}");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->distributed().chunk_bytes(), 524288);
  // 4096-byte chunks with the 1 MiB minimum message are valid.
  EXPECT_TRUE(
      LoadConfigText("distributed: {max_message_bytes: 1048576, chunk_bytes: 4096}").ok());
}

// Found by fuzz_Config: a list used as a key crashed the loader (an
// uncaught yaml-cpp exception); it is a one-line config error now.
TEST(ChunksTest, ConfigWithAListAsKeyIsAOneLineError) {
  absl::StatusOr<v1::ExperimentConfig> c =
      LoadConfigText("local: {lr: 1.1, [0.5, 0.5], gamma: 0.5}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(c.status().message(),
                               "config: local has a key that is a list or mapping; "
                               "keys are names (keys: "))
      << c.status();
  EXPECT_FALSE(absl::StrContains(c.status().message(), "\n"));
}

// Also found by fuzz_Config: yaml-cpp's message quotes the offending byte,
// which could be a line break; it is escaped now.
TEST(ChunksTest, YamlErrorWithALineBreakStaysOneLine) {
  const std::string yaml("{{Z{  : :\n\t-\x0f\0\n", 15);
  absl::StatusOr<v1::ExperimentConfig> c = LoadConfigText(yaml);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::StartsWith(c.status().message(), "config: not valid YAML at line "))
      << c.status();
  EXPECT_FALSE(absl::StrContains(c.status().message(), "\n"));
}

// And: an unknown key holding a line break is quoted escaped.
TEST(ChunksTest, UnknownKeyWithALineBreakStaysOneLine) {
  absl::StatusOr<v1::ExperimentConfig> c = LoadConfigText("local: {\"grad_clip\\nx\": 1}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::StartsWith(c.status().message(), "config: local.grad_clip\\x0ax: unknown key"))
      << c.status();
}

}  // namespace
}  // namespace chunks_test
}  // namespace fedsim
