#include "common/base/build_info.h"

#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace build_info_test {
namespace {

std::string Missing(const char* isa, bool (*has)(const char*)) {
  char out[256];
  MissingCpuFeatures(isa, has, out, sizeof out);
  return out;
}

bool HasAll(const char*) { return true; }
// A CPU of 2020 (AMD Zen 3): everything but AVX-512.
bool Zen3(const char* f) { return std::strncmp(f, "avx512", 6) != 0; }
bool HasNone(const char*) { return false; }
// A CPU of 2013 (Ivy Bridge): AVX without AVX2, FMA, BMI or MOVBE.
bool IvyBridge(const char* f) {
  for (const char* absent : {"avx2", "bmi", "bmi2", "fma", "lzcnt", "movbe"}) {
    if (std::strcmp(f, absent) == 0) return false;
  }
  return true;
}

TEST(BuildInfoTest, MissingCpuFeaturesNamesWhatTheLevelNeedsAndTheCpuLacks) {
  EXPECT_EQ(Missing("x86-64-v3", IvyBridge), "avx2, bmi, bmi2, fma, lzcnt, movbe");
  EXPECT_EQ(Missing("x86-64-v3", HasAll), "");
  EXPECT_EQ(Missing("x86-64-v2", IvyBridge), "");
  // Plain x86-64 and other architectures need nothing beyond the baseline.
  EXPECT_EQ(Missing("x86-64", HasNone), "");
  EXPECT_EQ(Missing("aarch64", HasNone), "");
  EXPECT_EQ(Missing("x86-64-v4", IvyBridge), "avx2, bmi, bmi2, fma, lzcnt, movbe");
  EXPECT_EQ(Missing("x86-64-v4", Zen3), "avx512f, avx512bw, avx512cd, avx512dq, avx512vl");
  // Truncated, never overrun.
  char small[8];
  MissingCpuFeatures("x86-64-v4", HasNone, small, sizeof small);
  EXPECT_EQ(std::string(small), "cmov, p");
}

TEST(BuildInfoTest, TheBuildRecordsItsLevelAndEigenUsesIt) {
  const std::string isa(BuildIsa());
  ASSERT_FALSE(isa.empty());
#if defined(__x86_64__)
  EXPECT_TRUE(isa == "x86-64" || isa == "x86-64-v2" || isa == "x86-64-v3" ||
              isa == "x86-64-v4")
      << isa;
  // Eigen's kernels were compiled for the recorded level.
  if (isa == "x86-64-v3") {
    EXPECT_EQ(BuildSimd(), "SSE2, SSE4.2, AVX, AVX2, FMA");
  }
  if (isa == "x86-64") {
    EXPECT_EQ(BuildSimd(), "SSE2");
  }
#endif
}

TEST(BuildInfoTest, AnotherLevelIsRefusedWithBothNamed) {
  EXPECT_TRUE(CheckSameBuildIsa("worker 'w'", BuildIsa()).ok());
  const absl::Status other = CheckSameBuildIsa("worker 'w'", "x86-64-v9");
  EXPECT_TRUE(absl::IsFailedPrecondition(other)) << other;
  EXPECT_TRUE(absl::StartsWith(other.message(), "worker 'w' comes from a build for x86-64-v9 "
                                                "and this one is for " +
                                                    std::string(BuildIsa())))
      << other;
  EXPECT_TRUE(absl::StrContains(other.message(), "-DFEDSIM_ISA=x86-64-v9")) << other;
  // An empty level: a build from before fedsim recorded it, plain x86-64.
  const absl::Status old = CheckSameBuildIsa("--resume: checkpoint 'c'", "");
  if (BuildIsa() == "x86-64") {
    EXPECT_TRUE(old.ok()) << old;
  } else {
    EXPECT_TRUE(absl::StrContains(old.message(), "before fedsim recorded its level")) << old;
  }
}

}  // namespace
}  // namespace build_info_test
}  // namespace fedsim
