#include "client/worker/fault_injecting_client.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace fedsim {

absl::StatusOr<bool> FaultInjectingClient::PushResult(WorkerId worker,
                                                      const ClientResult& result) {
  if (faults_.delay_push_ms > 0) {
    absl::SleepFor(absl::Milliseconds(faults_.delay_push_ms * (1 + result.task.value % 3)));
  }
  absl::StatusOr<bool> pushed = inner_->PushResult(worker, result);
  if (pushed.ok() && faults_.duplicate_push) {
    absl::StatusOr<bool> again = inner_->PushResult(worker, result);
    const std::string line = absl::StrCat(
        "fault: duplicate push sent for task ", result.task.value, ": ",
        again.ok() ? (*again ? "duplicate" : "accepted") : again.status().ToString());
    std::fprintf(stderr, "[%s] %s\n", faults_.name.c_str(), line.c_str());
  }
  return pushed;
}

}  // namespace fedsim
