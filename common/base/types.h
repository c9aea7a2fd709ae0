// File: common/base/types.h
//
// The domain vocabulary shared by every layer: strongly typed ids (a ClientId
// passed where a WorkerId is expected does not compile), rounds, and the flat
// parameter vector.
#ifndef FEDSIM_COMMON_BASE_TYPES_H_
#define FEDSIM_COMMON_BASE_TYPES_H_

#include <compare>
#include <cstdint>
#include <ostream>

#include "Eigen/Core"

namespace fedsim {

// A strongly typed integer id. `Tag` only distinguishes the types.
template <typename Tag>
struct StrongId {
  std::int64_t value = -1;

  constexpr StrongId() = default;
  constexpr explicit StrongId(std::int64_t v) : value(v) {}
  friend constexpr auto operator<=>(StrongId, StrongId) = default;
  friend std::ostream& operator<<(std::ostream& os, StrongId id) {
    return os << id.value;
  }
  template <typename H>
  friend H AbslHashValue(H h, StrongId id) {
    return H::combine(std::move(h), id.value);
  }
};

struct ClientIdTag {};
struct WorkerIdTag {};
struct TaskIdTag {};

// A virtual client: one holder of local data, 0..N-1.
using ClientId = StrongId<ClientIdTag>;
// A worker process hosting virtual clients (distributed runtime only).
using WorkerId = StrongId<WorkerIdTag>;
// A unit of work issued by the coordinator; results are keyed by it.
using TaskId = StrongId<TaskIdTag>;

// Synchronous round index, 0-based.
using Round = std::int64_t;

// Model parameters: one contiguous vector of doubles (DESIGN principle 5).
using FlatVector = Eigen::VectorXd;
using VectorRef = Eigen::Map<Eigen::VectorXd>;
using ConstVectorRef = Eigen::Map<const Eigen::VectorXd>;

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_TYPES_H_
