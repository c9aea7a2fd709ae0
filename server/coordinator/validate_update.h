// File: server/coordinator/validate_update.h
//
// Validation of a client's update before aggregation, shared by every
// engine (Engine::Admit; RELIABILITY.md requirement 15; docs/robust.md). In
// this order:
//   1. the update has exactly the model's number of values;
//   2. every value is finite (checked first, since NaN > c is false);
//   3. num_examples equals the client's n_k;
//   4. the optional norm bound aggregation.max_update_norm = B > 0:
//      reject (kInvalidArgument), or, once the result is accepted, clip the
//      update to norm B or zero it (the client still counts with its n_k).
// Every failure is kInvalidArgument with one line naming the round (or
// step), the client, the value and the rule; the engines log and count it.
#ifndef FEDSIM_SERVER_COORDINATOR_VALIDATE_UPDATE_H_
#define FEDSIM_SERVER_COORDINATOR_VALIDATE_UPDATE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "common/base/task.h"
#include "common/runlog/run_log.h"

namespace fedsim {

// The first check of every pushed result, in every engine: the task id
// was issued by this incarnation of the run (kAborted, "... incarnation
// ...": a result computed for a coordinator that has since restarted; the
// worker drops it and pulls again), and its sequence number is one issued
// so far, below `next_sequence` (kNotFound). OK otherwise.
absl::Status CheckTaskIssued(TaskId id, std::int64_t incarnation,
                             std::int64_t next_sequence);

enum class NormBoundAction { kReject, kClip, kZero };

struct UpdateValidation {
  double max_update_norm = 0.0;  // B; 0 = no bound
  NormBoundAction action = NormBoundAction::kReject;
};

// The Euclidean norm of `x`, without overflow for huge values (block-ordered,
// so the same bits in every process).
double UpdateNorm(const FlatVector& x);

// Checks 1-3; `where` is "round 3" or "step 3".
absl::Status CheckUpdate(std::string_view where, const ClientResult& r,
                         std::int64_t dim, std::int64_t n_k);

// Check 4 for action kReject (OK for the other actions and without a
// bound). REQUIRES: CheckUpdate accepted `r`. A result refused here is
// final (pushing it again gives the same norm): the engines close its task.
absl::Status CheckNormBound(const UpdateValidation& v, std::string_view where,
                            const ClientResult& r);

// What ApplyNormBound did to an accepted update.
struct NormBoundOutcome {
  bool changed = false;  // clipped or zeroed
  double norm = 0.0;     // the update's norm before
};

// For actions kClip and kZero: scales `update` to norm B or sets it to 0
// when its norm exceeds B. Call after CheckUpdate accepted the result.
NormBoundOutcome ApplyNormBound(const UpdateValidation& v, FlatVector& update);

// "reject", "clip" or "zero".
std::string_view NormBoundActionName(NormBoundAction action);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_VALIDATE_UPDATE_H_
