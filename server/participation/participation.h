// File: server/participation/participation.h
//
// Participation models: which clients take part in a round. They model the
// environment (who shows up), not a choice of the algorithm; the strategy
// only sees the result (ALGORITHMS.md §2.4). Models are pure: their
// randomness comes from streams keyed by (seed, kParticipation or
// kClientSampling, client, round).
//
// The models of the FedAU paper (Bernoulli, Markov, cyclic, trace) are in
// server/participation/availability.h; the per-client probabilities p_n
// they use are built by server/participation/probabilities.h.
//
// Thread safety: not thread-safe; the round engine calls Participants()
// once per round, for rounds 0, 1, 2, ... in order.
#ifndef FEDSIM_SERVER_PARTICIPATION_PARTICIPATION_H_
#define FEDSIM_SERVER_PARTICIPATION_PARTICIPATION_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "common/base/types.h"

namespace fedsim {

// What a participation model carries from one round to the next, as plain
// values, so that a coordinator checkpoint can save it and a restarted
// coordinator can restore it (RELIABILITY 8). Stateless models leave every
// field empty.
struct ParticipationState {
  // The round the next Participants() call must be for (stateful models).
  Round next_round = 0;
  // Per client: 1 if currently active (Markov, cyclic), else 0.
  std::vector<std::uint8_t> active;
  // Per client: rounds left before the state toggles (cyclic).
  std::vector<std::int64_t> countdown;

  friend bool operator==(const ParticipationState&,
                         const ParticipationState&) = default;
};

class ParticipationModel {
 public:
  virtual ~ParticipationModel() = default;
  // The clients participating in `round`, sorted by id.
  virtual std::vector<ClientId> Participants(Round round) = 0;

  // The state carried between rounds. Stateless models (the default) return
  // a default-constructed state.
  virtual ParticipationState SaveState() const { return {}; }
  // Replaces the state with one returned by SaveState() of a model built
  // with the same arguments. Fails with kInvalidArgument (and changes
  // nothing) if the state does not fit the model, for example a per-client
  // vector of the wrong length.
  virtual absl::Status RestoreState(const ParticipationState& /*state*/) {
    return absl::OkStatus();
  }
};

// FedAvg's cohort sampling (Decision 1): every round m = max(round(C N), 1)
// clients drawn uniformly without replacement (round half up), from the
// stream (seed, kClientSampling, -1, round).
class UniformCohort : public ParticipationModel {
 public:
  // REQUIRES: 0 < client_fraction <= 1, num_clients >= 1.
  UniformCohort(std::uint64_t seed, std::int64_t num_clients,
                double client_fraction);
  std::vector<ClientId> Participants(Round round) override;
  std::int64_t cohort_size() const { return m_; }

 private:
  std::uint64_t seed_;
  std::int64_t n_;
  std::int64_t m_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_PARTICIPATION_PARTICIPATION_H_
