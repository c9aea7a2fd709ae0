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

// A task id is (incarnation, sequence): the run's incarnation (0 for a
// fresh run, one more at every restart from a checkpoint) in the bits above
// the lowest 40, the sequence number of the task within the run (1, 2, ...)
// below. A task issued before a restart therefore never has the id of one
// issued after it, though a resumed run numbers its tasks as the first
// incarnation did; a fresh run's ids are its sequence numbers.
inline constexpr int kTaskSequenceBits = 40;
inline constexpr std::int64_t kMaxTaskSequence = (std::int64_t{1} << kTaskSequenceBits) - 1;
inline TaskId MakeTaskId(std::int64_t incarnation, std::int64_t sequence) {
  return TaskId((incarnation << kTaskSequenceBits) | sequence);
}
inline std::int64_t TaskIncarnation(TaskId id) { return id.value >> kTaskSequenceBits; }
inline std::int64_t TaskSequence(TaskId id) { return id.value & kMaxTaskSequence; }

// Synchronous round index, 0-based.
using Round = std::int64_t;

// Model parameters: one contiguous vector of doubles (DESIGN principle 5).
using FlatVector = Eigen::VectorXd;
using VectorRef = Eigen::Map<Eigen::VectorXd>;
using ConstVectorRef = Eigen::Map<const Eigen::VectorXd>;

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_TYPES_H_
