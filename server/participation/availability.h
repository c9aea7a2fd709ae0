// File: server/participation/availability.h
//
// The participation models of the FedAU paper (ALGORITHMS.md §2.4, with the
// semantics of the official code, IBM/fedau util/util.py WorkerSampler):
// who is available in a round is decided by the environment, client by
// client, from per-client probabilities p_n (probabilities.h). The models
// are pure: client n's draws in round t come from the stream
// (seed, kParticipation, n, t), its initial state from (seed,
// kParticipation, n, -1), so a run does not depend on how many clients or
// rounds were simulated before.
//
//   Bernoulli  q_n^t ~ Bernoulli(p_n), independent over rounds and clients.
//   Markov     on/off chain; P(off -> on) = a, P(on -> off) = a (1/p_n - 1),
//              both divided by the latter if it exceeds 1. Starts on with
//              probability p_n; every round the chain steps, then its state
//              is returned. Stationary on-probability: p_n.
//   Cyclic     on for A = max(1, round(P p_n)) rounds, off for
//              U = max(1, P - A) rounds. Starts off with a countdown
//              r0 ~ UniformInt{0, ..., U - 1}. Every round: if the countdown
//              is 0, toggle and reset it to A (now on) or U (now off); then
//              decrement it and return the state. round() is NumPy's: half
//              to even.
//   Trace      the clients a trace lists for the round (wrapping around).
//
// Thread safety: not thread-safe. Stateful models (Markov, cyclic) must be
// asked for rounds 0, 1, 2, ... in order (or from the next_round of a
// restored state).
#ifndef FEDSIM_SERVER_PARTICIPATION_AVAILABILITY_H_
#define FEDSIM_SERVER_PARTICIPATION_AVAILABILITY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/participation/participation.h"

namespace fedsim {

class BernoulliAvailability : public ParticipationModel {
 public:
  // REQUIRES: p non-empty, every p_n in [0, 1].
  BernoulliAvailability(std::uint64_t seed, std::vector<double> p);
  std::vector<ClientId> Participants(Round round) override;

 private:
  std::uint64_t seed_;
  std::vector<double> p_;
};

// The Markov chain's transition probabilities for p_n and a:
// {P(off -> on), P(on -> off)}. REQUIRES: 0 < p <= 1, 0 < a <= 1.
std::pair<double, double> MarkovTransition(double p, double a);

class MarkovAvailability : public ParticipationModel {
 public:
  // REQUIRES: p non-empty, every p_n in (0, 1], 0 < a <= 1.
  MarkovAvailability(std::uint64_t seed, std::vector<double> p, double a);
  std::vector<ClientId> Participants(Round round) override;
  ParticipationState SaveState() const override;
  absl::Status RestoreState(const ParticipationState& state) override;

 private:
  std::uint64_t seed_;
  std::vector<double> to_active_, to_inactive_;
  ParticipationState state_;  // active: the state returned last
};

// Cyclic lengths for p_n and period P: {A, U}. REQUIRES: 0 <= p <= 1, P >= 1.
std::pair<std::int64_t, std::int64_t> CyclicLengths(double p,
                                                    std::int64_t period);

class CyclicAvailability : public ParticipationModel {
 public:
  // REQUIRES: p non-empty, every p_n in [0, 1], period >= 1.
  CyclicAvailability(std::uint64_t seed, std::vector<double> p,
                     std::int64_t period);
  std::vector<ClientId> Participants(Round round) override;
  ParticipationState SaveState() const override;
  // Also accepts any countdown in [0, max(A, U)] per client, so a test can
  // set the initial phase r0.
  absl::Status RestoreState(const ParticipationState& state) override;

 private:
  std::vector<std::int64_t> active_len_, inactive_len_;
  ParticipationState state_;
};

// A participation trace: the clients available in each round, sorted.
using Trace = std::vector<std::vector<ClientId>>;

// Parses a trace file's text (format: config.proto, trace_file): one line per
// round, ids separated by spaces or commas, empty line = nobody, '#' starts
// a comment line. Fails with kInvalidArgument naming the line for an id
// that is not an integer in [0, num_clients), a repeated id, or a trace
// with no rounds.
absl::StatusOr<Trace> ParseTrace(absl::string_view text,
                                 std::int64_t num_clients);

// How often each client is available over rounds 0..rounds-1 of `trace`
// (wrapping around): the true p_n of a trace, for known_prob.
std::vector<double> TraceFrequencies(const Trace& trace,
                                     std::int64_t num_clients,
                                     std::int64_t rounds);

class TraceAvailability : public ParticipationModel {
 public:
  // REQUIRES: trace non-empty (ParseTrace guarantees it).
  explicit TraceAvailability(Trace trace);
  std::vector<ClientId> Participants(Round round) override;

 private:
  Trace trace_;
};

// Clients that join late: client n never participates before round
// join_rounds[n]; otherwise `inner` decides. The inner model is asked every
// round, so a stateful model's chains run from round 0 for every client.
class LateJoin : public ParticipationModel {
 public:
  // REQUIRES: inner non-null, every join round >= 0.
  LateJoin(std::unique_ptr<ParticipationModel> inner,
           std::vector<Round> join_rounds);
  std::vector<ClientId> Participants(Round round) override;
  ParticipationState SaveState() const override { return inner_->SaveState(); }
  absl::Status RestoreState(const ParticipationState& state) override {
    return inner_->RestoreState(state);
  }

 private:
  std::unique_ptr<ParticipationModel> inner_;
  std::vector<Round> join_rounds_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_PARTICIPATION_AVAILABILITY_H_
