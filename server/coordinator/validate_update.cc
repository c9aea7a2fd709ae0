#include "server/coordinator/validate_update.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {

absl::Status CheckTaskIssued(TaskId id, std::int64_t incarnation,
                             std::int64_t next_sequence) {
  if (id.value > 0 && TaskIncarnation(id) != incarnation) {
    return absl::AbortedError(absl::StrCat(
        "task ", id.value, " was issued by incarnation ", TaskIncarnation(id),
        " of this run; the coordinator restarted from a checkpoint and is incarnation ",
        incarnation, " (drop the result and pull a new task)"));
  }
  const std::int64_t sequence = TaskSequence(id);
  if (id.value <= 0 || sequence < 1 || sequence >= next_sequence) {
    return absl::NotFoundError(absl::StrCat("task ", id.value, " was never issued"));
  }
  return absl::OkStatus();
}

double UpdateNorm(const FlatVector& x) {
  const double sq = SquaredNorm(x);
  if (std::isfinite(sq) || x.size() == 0) return std::sqrt(sq);
  // Overflow (values above ~1e154): scale by the largest magnitude first.
  const double m = x.cwiseAbs().maxCoeff();
  const FlatVector scaled = x / m;
  return m * std::sqrt(SquaredNorm(scaled));
}

absl::Status CheckUpdate(std::string_view where, const ClientResult& r,
                         std::int64_t dim, std::int64_t n_k) {
  const std::string who = absl::StrCat(std::string(where), ", client ", r.client.value);
  if (r.update.size() != dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": update has ", r.update.size(), " values, expected ", dim));
  }
  if (!AllFinite(r.update)) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": update has NaN or infinite values"));
  }
  if (r.num_examples != n_k) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": num_examples = ", r.num_examples, "; the client has ", n_k, " rows"));
  }
  return absl::OkStatus();
}

absl::Status CheckNormBound(const UpdateValidation& v, std::string_view where,
                            const ClientResult& r) {
  if (v.max_update_norm > 0.0 && v.action == NormBoundAction::kReject) {
    const double norm = UpdateNorm(r.update);
    if (norm > v.max_update_norm) {
      return absl::InvalidArgumentError(absl::StrCat(
          std::string(where), ", client ", r.client.value, ": update norm = ", norm,
          "; must be <= aggregation.max_update_norm = ", v.max_update_norm));
    }
  }
  return absl::OkStatus();
}

NormBoundOutcome ApplyNormBound(const UpdateValidation& v, FlatVector& update) {
  NormBoundOutcome out;
  if (!(v.max_update_norm > 0.0) || v.action == NormBoundAction::kReject) return out;
  out.norm = UpdateNorm(update);
  if (out.norm <= v.max_update_norm) return out;
  out.changed = true;
  if (v.action == NormBoundAction::kZero) {
    update.setZero();
  } else {
    update *= v.max_update_norm / out.norm;
  }
  return out;
}

std::string_view NormBoundActionName(NormBoundAction action) {
  switch (action) {
    case NormBoundAction::kReject: return "reject";
    case NormBoundAction::kClip: return "clip";
    case NormBoundAction::kZero: return "zero";
  }
  return "?";
}

}  // namespace fedsim
