#include "common/base/build_info.h"

#include "Eigen/Core"
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#ifndef FEDSIM_BUILD_ISA
#error "FEDSIM_BUILD_ISA is set by common/CMakeLists.txt"
#endif

namespace fedsim {

absl::string_view BuildIsa() { return FEDSIM_BUILD_ISA; }

std::string BuildSimd() {
  // Eigen's own list (SimdInstructionSetsInUse) omits AVX2 and FMA.
  std::vector<absl::string_view> sets;
#ifdef EIGEN_VECTORIZE_SSE2
  sets.push_back("SSE2");
#endif
#ifdef EIGEN_VECTORIZE_SSE4_2
  sets.push_back("SSE4.2");
#endif
#ifdef EIGEN_VECTORIZE_AVX
  sets.push_back("AVX");
#endif
#ifdef EIGEN_VECTORIZE_AVX2
  sets.push_back("AVX2");
#endif
#ifdef EIGEN_VECTORIZE_FMA
  sets.push_back("FMA");
#endif
#ifdef EIGEN_VECTORIZE_AVX512
  sets.push_back("AVX512");
#endif
#ifdef EIGEN_VECTORIZE_NEON
  sets.push_back("NEON");
#endif
  return sets.empty() ? std::string("none") : absl::StrJoin(sets, ", ");
}

absl::Status CheckSameBuildIsa(absl::string_view what, absl::string_view peer_isa) {
  // Builds from before fedsim recorded the level targeted plain x86-64.
  if ((peer_isa.empty() ? absl::string_view("x86-64") : peer_isa) == BuildIsa()) {
    return absl::OkStatus();
  }
  const std::string peer = peer_isa.empty()
                               ? std::string("x86-64 (a build before fedsim recorded its level)")
                               : std::string(peer_isa);
  return absl::FailedPreconditionError(absl::StrCat(
      what, " comes from a build for ", peer, " and this one is for ", BuildIsa(),
      "; their results differ in the last bits, so use binaries of one build (cmake "
      "-DFEDSIM_ISA=", peer_isa.empty() ? absl::string_view("x86-64") : peer_isa,
      " builds for that level; docs/architecture.md, \"Vector ISA and determinism\")"));
}

}  // namespace fedsim
