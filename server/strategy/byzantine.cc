#include "server/strategy/byzantine.h"

#include <algorithm>
#include <cmath>

#include "common/random/stream.h"

namespace fedsim {

std::vector<std::int64_t> DrawByzantineClients(std::uint64_t seed, std::int64_t n,
                                               double fraction) {
  const auto count = std::min<std::int64_t>(
      n, static_cast<std::int64_t>(std::floor(fraction * static_cast<double>(n) + 0.5)));
  RngStream rng(seed, RngPurpose::kByzantineClients, -1, -1);
  std::vector<std::int64_t> clients = rng.SampleWithoutReplacement(n, count);
  std::sort(clients.begin(), clients.end());
  return clients;
}

Adversary::Adversary(AdversaryOptions options) : options_(std::move(options)) {
  std::sort(options_.clients.begin(), options_.clients.end());
}

bool Adversary::IsByzantine(std::int64_t client) const {
  return std::binary_search(options_.clients.begin(), options_.clients.end(), client);
}

void Adversary::Apply(std::int64_t client, std::int64_t round,
                      FlatVector& update) const {
  if (!IsByzantine(client)) return;
  const double s = options_.scale;
  switch (options_.attack) {
    case ByzantineAttack::kSignFlip:
      update *= -s;
      break;
    case ByzantineAttack::kScaled:
      update *= s;
      break;
    case ByzantineAttack::kConstant:
      update.setConstant(s);
      break;
    case ByzantineAttack::kGaussian: {
      RngStream rng(options_.seed, RngPurpose::kByzantineAttack, client, round);
      for (Eigen::Index i = 0; i < update.size(); ++i) update[i] = s * rng.Gaussian();
      break;
    }
  }
}

}  // namespace fedsim
