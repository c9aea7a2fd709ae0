// File: common/base/status_macros.h
//
// Small status helpers that Debian's Abseil (20220623) does not ship:
// FEDSIM_RETURN_IF_ERROR, FEDSIM_ASSIGN_OR_RETURN and AnnotateStatus.
#ifndef FEDSIM_COMMON_BASE_STATUS_MACROS_H_
#define FEDSIM_COMMON_BASE_STATUS_MACROS_H_

#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace fedsim {

// Returns `status` with `context` prepended to its message ("context: msg").
// The code is kept. OK stays OK.
inline absl::Status AnnotateStatus(const absl::Status& status,
                                   absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

}  // namespace fedsim

#define FEDSIM_STATUS_CONCAT_INNER_(a, b) a##b
#define FEDSIM_STATUS_CONCAT_(a, b) FEDSIM_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing
// function if it is not OK.
#define FEDSIM_RETURN_IF_ERROR(expr)                                  \
  do {                                                                \
    ::absl::Status fedsim_status_ = (expr);                           \
    if (!fedsim_status_.ok()) return fedsim_status_;                  \
  } while (false)

// Evaluates `expr` (an absl::StatusOr<T>); on error returns its status from
// the enclosing function, otherwise moves the value into `lhs`, which may be
// a declaration (`auto x`) or an existing variable.
#define FEDSIM_ASSIGN_OR_RETURN(lhs, expr)                                   \
  FEDSIM_ASSIGN_OR_RETURN_IMPL_(                                             \
      FEDSIM_STATUS_CONCAT_(fedsim_statusor_, __LINE__), lhs, expr)
#define FEDSIM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()

#endif  // FEDSIM_COMMON_BASE_STATUS_MACROS_H_
