// File: server/strategy/byzantine.h
//
// Simulated Byzantine clients for robustness experiments (config section
// `adversary`, docs/robust.md). The round engine applies the attack to a
// Byzantine client's update when the result arrives, before validation, so
// the embedded and the distributed runtime (whose workers stay honest) see
// the same bits.
//
//   sign_flip  Delta' = -scale * Delta
//   scaled     Delta' =  scale * Delta
//   gaussian   Delta' =  scale * z, z ~ N(0, I) from the stream
//              (seed, kByzantineAttack, client, round)
//   constant   Delta' =  scale * 1 (every coordinate = scale)
#ifndef FEDSIM_SERVER_STRATEGY_BYZANTINE_H_
#define FEDSIM_SERVER_STRATEGY_BYZANTINE_H_

#include <cstdint>
#include <vector>

#include "common/base/types.h"

namespace fedsim {

enum class ByzantineAttack { kSignFlip, kGaussian, kScaled, kConstant };

struct AdversaryOptions {
  std::uint64_t seed = 1;
  ByzantineAttack attack = ByzantineAttack::kSignFlip;
  double scale = 100.0;
  std::vector<std::int64_t> clients;  // the Byzantine clients, sorted
};

// round(fraction * n) clients (half up), drawn uniformly without replacement
// from the stream (seed, kByzantineClients, -1, -1); sorted.
std::vector<std::int64_t> DrawByzantineClients(std::uint64_t seed, std::int64_t n,
                                               double fraction);

class Adversary {
 public:
  explicit Adversary(AdversaryOptions options);
  bool IsByzantine(std::int64_t client) const;
  const std::vector<std::int64_t>& clients() const { return options_.clients; }
  // Replaces `update` of `client` in round `round` by the attack's vector
  // (same size). No-op for honest clients.
  void Apply(std::int64_t client, std::int64_t round, FlatVector& update) const;

 private:
  AdversaryOptions options_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_BYZANTINE_H_
