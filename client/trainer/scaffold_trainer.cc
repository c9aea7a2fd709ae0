#include "client/trainer/scaffold_trainer.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {

absl::StatusOr<ScaffoldClientOutput> RunScaffoldClient(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& x,
    const FlatVector& server_control, FlatVector& client_control,
    const LocalTrainingSpec& spec, ScaffoldOption option, RngStream& rng) {
  const std::int64_t d = objective.NumParameters();
  if (client_control.size() == 0) client_control = FlatVector::Zero(d);
  if (x.size() != d || server_control.size() != d || client_control.size() != d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SCAFFOLD client: x, c and c_i have ", x.size(), ", ",
        server_control.size(), " and ", client_control.size(),
        " values, expected ", d));
  }
  if (option != ScaffoldOption::kOptionI && option != ScaffoldOption::kOptionII) {
    return absl::InvalidArgumentError(
        "SCAFFOLD client: the control-variate option must be I or II");
  }
  // The correction added to every local gradient: c - c_i.
  const FlatVector offset = server_control - client_control;
  ScaffoldClientOutput out;
  FEDSIM_ASSIGN_OR_RETURN(out.local, RunLocalSgd(objective, train, rows, x,
                                                 spec, rng, &offset));
  FlatVector next(d);
  if (option == ScaffoldOption::kOptionI) {
    std::vector<std::int64_t> all(rows.begin(), rows.end());
    Batch batch;
    GatherBatch(train, all, batch);
    objective.Evaluate(x, batch, &next);
  } else {
    // c_i - c + (x - y) / (K eta_l), with x - y = -Delta y.
    const double k_eta =
        static_cast<double>(out.local.num_steps) * spec.lr;
    next = client_control - server_control - out.local.update / k_eta;
  }
  if (!AllFinite(next)) {
    return absl::OutOfRangeError(
        "SCAFFOLD client: non-finite control variate (lower local.lr)");
  }
  out.control_delta = next - client_control;
  client_control = std::move(next);
  return out;
}

}  // namespace fedsim
