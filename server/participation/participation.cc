#include "server/participation/participation.h"

#include <algorithm>
#include <cmath>

#include "common/base/check.h"
#include "common/random/stream.h"

namespace fedsim {

UniformCohort::UniformCohort(std::uint64_t seed, std::int64_t num_clients,
                             double client_fraction)
    : seed_(seed), n_(num_clients) {
  FEDSIM_CHECK(num_clients >= 1 && client_fraction > 0.0 && client_fraction <= 1.0);
  m_ = std::clamp<std::int64_t>(
      static_cast<std::int64_t>(
          std::floor(client_fraction * static_cast<double>(n_) + 0.5)),
      1, n_);
}

std::vector<ClientId> UniformCohort::Participants(Round round) {
  RngStream rng(seed_, RngPurpose::kClientSampling, -1, round);
  std::vector<ClientId> out;
  out.reserve(m_);
  for (std::int64_t k : rng.SampleWithoutReplacement(n_, m_)) {
    out.push_back(ClientId(k));
  }
  return out;
}

}  // namespace fedsim
