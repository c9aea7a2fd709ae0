#include "server/participation/availability.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/check.h"
#include "common/random/stream.h"

namespace fedsim {
namespace {

// NumPy's np.round: half to even, independent of the FPU rounding mode.
std::int64_t RoundHalfEven(double x) {
  const double r = std::floor(x);
  const double diff = x - r;
  auto i = static_cast<std::int64_t>(r);
  if (diff > 0.5) return i + 1;
  if (diff < 0.5) return i;
  return i % 2 == 0 ? i : i + 1;
}

absl::Status CheckStateSize(const ParticipationState& state, std::size_t n,
                            bool with_countdown) {
  if (state.next_round < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("participation state: next_round = ", state.next_round,
                     "; must be >= 0"));
  }
  if (state.active.size() != n ||
      (with_countdown ? state.countdown.size() != n : !state.countdown.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "participation state: ", state.active.size(), " active flags and ",
        state.countdown.size(), " countdowns for a model of ", n, " clients"));
  }
  for (std::uint8_t a : state.active) {
    if (a > 1) {
      return absl::InvalidArgumentError(
          "participation state: an active flag is neither 0 nor 1");
    }
  }
  return absl::OkStatus();
}

}  // namespace

BernoulliAvailability::BernoulliAvailability(std::uint64_t seed,
                                             std::vector<double> p)
    : seed_(seed), p_(std::move(p)) {
  FEDSIM_CHECK(!p_.empty());
  for (double v : p_) FEDSIM_CHECK(v >= 0.0 && v <= 1.0) << v;
}

std::vector<ClientId> BernoulliAvailability::Participants(Round round) {
  std::vector<ClientId> out;
  for (std::size_t n = 0; n < p_.size(); ++n) {
    const auto id = static_cast<std::int64_t>(n);
    RngStream rng(seed_, RngPurpose::kParticipation, id, round);
    if (rng.Uniform01() < p_[n]) out.push_back(ClientId(id));
  }
  return out;
}

std::pair<double, double> MarkovTransition(double p, double a) {
  FEDSIM_CHECK(p > 0.0 && p <= 1.0 && a > 0.0 && a <= 1.0) << p << " " << a;
  double to_active = a;
  double to_inactive = a * (1.0 / p - 1.0);
  if (to_inactive > 1.0) {
    to_active /= to_inactive;
    to_inactive = 1.0;
  }
  return {to_active, to_inactive};
}

MarkovAvailability::MarkovAvailability(std::uint64_t seed,
                                       std::vector<double> p, double a)
    : seed_(seed) {
  FEDSIM_CHECK(!p.empty());
  state_.active.resize(p.size());
  for (std::size_t n = 0; n < p.size(); ++n) {
    const auto [up, down] = MarkovTransition(p[n], a);
    to_active_.push_back(up);
    to_inactive_.push_back(down);
    RngStream rng(seed_, RngPurpose::kParticipation,
                  static_cast<std::int64_t>(n), -1);
    state_.active[n] = rng.Uniform01() < p[n] ? 1 : 0;
  }
}

std::vector<ClientId> MarkovAvailability::Participants(Round round) {
  FEDSIM_CHECK(round == state_.next_round)
      << "Markov participation asked for round " << round << ", expected "
      << state_.next_round;
  std::vector<ClientId> out;
  for (std::size_t n = 0; n < to_active_.size(); ++n) {
    const auto id = static_cast<std::int64_t>(n);
    RngStream rng(seed_, RngPurpose::kParticipation, id, round);
    const double u = rng.Uniform01();
    if (state_.active[n] != 0) {
      if (u < to_inactive_[n]) state_.active[n] = 0;
    } else {
      if (u < to_active_[n]) state_.active[n] = 1;
    }
    if (state_.active[n] != 0) out.push_back(ClientId(id));
  }
  ++state_.next_round;
  return out;
}

ParticipationState MarkovAvailability::SaveState() const { return state_; }

absl::Status MarkovAvailability::RestoreState(const ParticipationState& state) {
  if (absl::Status s = CheckStateSize(state, to_active_.size(), false); !s.ok()) {
    return s;
  }
  state_ = state;
  return absl::OkStatus();
}

std::pair<std::int64_t, std::int64_t> CyclicLengths(double p,
                                                    std::int64_t period) {
  FEDSIM_CHECK(p >= 0.0 && p <= 1.0 && period >= 1) << p << " " << period;
  const std::int64_t active =
      std::max<std::int64_t>(1, RoundHalfEven(static_cast<double>(period) * p));
  const std::int64_t inactive = std::max<std::int64_t>(1, period - active);
  return {active, inactive};
}

CyclicAvailability::CyclicAvailability(std::uint64_t seed,
                                       std::vector<double> p,
                                       std::int64_t period) {
  FEDSIM_CHECK(!p.empty());
  state_.active.assign(p.size(), 0);
  state_.countdown.resize(p.size());
  for (std::size_t n = 0; n < p.size(); ++n) {
    const auto [a, u] = CyclicLengths(p[n], period);
    active_len_.push_back(a);
    inactive_len_.push_back(u);
    RngStream rng(seed, RngPurpose::kParticipation,
                  static_cast<std::int64_t>(n), -1);
    state_.countdown[n] =
        static_cast<std::int64_t>(rng.UniformInt(static_cast<std::uint64_t>(u)));
  }
}

std::vector<ClientId> CyclicAvailability::Participants(Round round) {
  FEDSIM_CHECK(round == state_.next_round)
      << "cyclic participation asked for round " << round << ", expected "
      << state_.next_round;
  std::vector<ClientId> out;
  for (std::size_t n = 0; n < active_len_.size(); ++n) {
    if (state_.countdown[n] == 0) {
      state_.active[n] = state_.active[n] != 0 ? 0 : 1;
      state_.countdown[n] =
          state_.active[n] != 0 ? active_len_[n] : inactive_len_[n];
    }
    --state_.countdown[n];
    if (state_.active[n] != 0) {
      out.push_back(ClientId(static_cast<std::int64_t>(n)));
    }
  }
  ++state_.next_round;
  return out;
}

ParticipationState CyclicAvailability::SaveState() const { return state_; }

absl::Status CyclicAvailability::RestoreState(const ParticipationState& state) {
  if (absl::Status s = CheckStateSize(state, active_len_.size(), true); !s.ok()) {
    return s;
  }
  for (std::size_t n = 0; n < active_len_.size(); ++n) {
    const std::int64_t limit = std::max(active_len_[n], inactive_len_[n]);
    if (state.countdown[n] < 0 || state.countdown[n] > limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "participation state: client ", n, " has countdown ",
          state.countdown[n], "; must be in [0, ", limit, "]"));
    }
  }
  state_ = state;
  return absl::OkStatus();
}

absl::StatusOr<Trace> ParseTrace(absl::string_view text,
                                 std::int64_t num_clients) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  // A final newline ends the last line; it does not start an empty round.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  Trace trace;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    absl::string_view line = absl::StripAsciiWhitespace(lines[i]);
    if (!line.empty() && line.front() == '#') continue;
    std::set<std::int64_t> ids;
    for (absl::string_view token :
         absl::StrSplit(line, absl::ByAnyChar(" ,\t"), absl::SkipEmpty())) {
      std::int64_t id;
      if (!absl::SimpleAtoi(token, &id) || id < 0 || id >= num_clients) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", i + 1, ": '", token, "' is not a client id in [0, ",
            num_clients, ")"));
      }
      if (!ids.insert(id).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", i + 1, ": client ", id, " is listed twice"));
      }
    }
    std::vector<ClientId> round;
    round.reserve(ids.size());
    for (std::int64_t id : ids) round.push_back(ClientId(id));
    trace.push_back(std::move(round));
  }
  if (trace.empty()) {
    return absl::InvalidArgumentError("the trace lists no rounds");
  }
  return trace;
}

std::vector<double> TraceFrequencies(const Trace& trace,
                                     std::int64_t num_clients,
                                     std::int64_t rounds) {
  FEDSIM_CHECK(!trace.empty() && rounds >= 1);
  std::vector<double> count(static_cast<std::size_t>(num_clients), 0.0);
  const auto length = static_cast<std::int64_t>(trace.size());
  for (Round t = 0; t < rounds; ++t) {
    for (ClientId c : trace[t % length]) count[c.value] += 1.0;
  }
  for (double& c : count) c /= static_cast<double>(rounds);
  return count;
}

TraceAvailability::TraceAvailability(Trace trace) : trace_(std::move(trace)) {
  FEDSIM_CHECK(!trace_.empty());
}

std::vector<ClientId> TraceAvailability::Participants(Round round) {
  return trace_[round % static_cast<Round>(trace_.size())];
}

LateJoin::LateJoin(std::unique_ptr<ParticipationModel> inner,
                   std::vector<Round> join_rounds)
    : inner_(std::move(inner)), join_rounds_(std::move(join_rounds)) {
  FEDSIM_CHECK(inner_ != nullptr);
  for (Round r : join_rounds_) FEDSIM_CHECK(r >= 0);
}

std::vector<ClientId> LateJoin::Participants(Round round) {
  std::vector<ClientId> out = inner_->Participants(round);
  std::erase_if(out, [&](ClientId c) {
    return c.value < static_cast<std::int64_t>(join_rounds_.size()) &&
           round < join_rounds_[c.value];
  });
  return out;
}

}  // namespace fedsim
