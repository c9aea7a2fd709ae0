// File: common/base/client_state.h
//
// State a virtual client keeps between the rounds it takes part in:
// SCAFFLSA's control variate and last local iterate, a Markov oracle's
// chain state, DiceSGD's error buffer, SCAFFOLD's c_i. Vectors are named by
// the algorithm that owns them ("scafflsa.xi", ...).
//
// The coordinator owns every client's state in both runtimes (and keeps it
// in its checkpoints). The embedded runtime hands a task's client its state
// by pointer; the distributed coordinator sends it with the task and takes
// the updated state back with the result, after checking it against the
// algorithm's layout (CheckClientState), so that any worker can serve any
// client (docs/reliability.md, "Where client state lives").
#ifndef FEDSIM_COMMON_BASE_CLIENT_STATE_H_
#define FEDSIM_COMMON_BASE_CLIENT_STATE_H_

#include <cmath>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/types.h"

namespace fedsim {

// The names of the state vectors.
inline constexpr char kScaffLsaControl[] = "scafflsa.xi";
inline constexpr char kScaffLsaLastIterate[] = "scafflsa.last_iterate";
// The round the last iterate is from (one value), matched against the
// anchor_round of the agent's next task.
inline constexpr char kScaffLsaLastRound[] = "scafflsa.last_round";
inline constexpr char kLsaMarkovState[] = "lsa.markov_state";
// DiceSGD's error buffer e (d values).
inline constexpr char kDiceSgdErrorBuffer[] = "dicesgd.error";
// SCAFFOLD's client control variate c_i (d values; only Delta c_i is part
// of the result proper).
inline constexpr char kScaffoldControl[] = "scaffold.c";

struct ClientState {
  // Ordered by name, so a serialised state is canonical.
  std::map<std::string, FlatVector> vectors;

  // The vector `name`, created as `size` zeros on first use.
  FlatVector& Vector(const std::string& name, Eigen::Index size) {
    auto [it, inserted] = vectors.try_emplace(name);
    if (inserted) it->second = FlatVector::Zero(size);
    return it->second;
  }
  bool Has(const std::string& name) const { return vectors.count(name) > 0; }
};

// The vectors an algorithm's client state may hold, by name, with their
// exact sizes (ClientStateLayoutOf in algorithms/registry.h). Any
// subset may be present (a client that never trained holds none).
using ClientStateLayout = std::map<std::string, Eigen::Index>;

// Checks a state that crossed a process boundary: every vector is named in
// `layout`, has its exact size and only finite values. kInvalidArgument,
// one line starting with `where`, naming the vector and the rule.
inline absl::Status CheckClientState(const ClientState& state,
                                     const ClientStateLayout& layout,
                                     absl::string_view where) {
  for (const auto& [name, v] : state.vectors) {
    auto it = layout.find(name);
    if (it == layout.end()) {
      std::string known;
      for (const auto& [n, size] : layout) absl::StrAppend(&known, known.empty() ? "" : ", ", n);
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": client_state vector '", name, "' is not one this algorithm keeps (",
          known.empty() ? "none" : known, ")"));
    }
    if (v.size() != it->second) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": client_state vector '", name, "' has ", v.size(),
          " values; must have ", it->second));
    }
    for (Eigen::Index i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": client_state vector '", name, "' value ", i,
            " is NaN or infinite; values must be finite"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_CLIENT_STATE_H_
