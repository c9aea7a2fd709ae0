// File: server/strategy/strategy.h
//
// The server side of a synchronous FL algorithm: a state machine with no I/O,
// no threads and no clock (DESIGN principle 1). Each round the coordinator
// asks the participation model who takes part, calls Plan() with those
// clients and Aggregate() with the results that came back, sorted by client
// id.
//
// Thread safety: not thread-safe; the coordinator serialises calls.
#ifndef FEDSIM_SERVER_STRATEGY_STRATEGY_H_
#define FEDSIM_SERVER_STRATEGY_STRATEGY_H_

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "common/base/types.h"

namespace fedsim {

// What Aggregate did, for the run log.
struct AggregationReport {
  // The weight each aggregated client's update received, in client order.
  std::vector<std::pair<ClientId, double>> weights;
  // Non-empty when the round's results could not be aggregated (a robust
  // rule got fewer results than it needs, docs/robust.md): the model is
  // unchanged and the engine logs an `aggregation_failed` event with this
  // one-line reason.
  std::string failure;
};

class SyncStrategy {
 public:
  virtual ~SyncStrategy() = default;

  // Display name ("FedAvg").
  virtual std::string_view name() const = 0;

  // The local work of round `round` for the participating clients
  // `participants` (sorted by id). Returns task specs sorted by client id;
  // usually one per participant.
  virtual std::vector<TaskSpec> Plan(Round round,
                                     std::span<const ClientId> participants) = 0;

  // Folds `results` (sorted by client id, at most one per client, each
  // already validated for size and finiteness) into `global`. An empty
  // `results` leaves `global` unchanged, except in MIFA (mifa.h), which
  // applies its stored updates in every round. Fails with kInvalidArgument
  // if a result names a client that was not planned this round.
  virtual absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) = 0;

  // The algorithm's own check of a result for a task it planned, after the
  // generic one (size, finiteness, n_k); an error (kInvalidArgument, a
  // one-line reason without the round and client, which the caller adds)
  // rejects the result. The default: no control_delta (only SCAFFOLD sends
  // one).
  virtual absl::Status CheckResult(const ClientResult& result) const {
    if (result.control_delta.size() > 0) {
      return absl::InvalidArgumentError("the result has a control_delta the task did not ask for");
    }
    return absl::OkStatus();
  }

  // The state the strategy carries from one round to the next, encoded for
  // a coordinator checkpoint (RELIABILITY 8). Stateless strategies (the
  // default) return no bytes. Called between rounds only.
  virtual std::string EncodeState() const { return {}; }
  // Replaces the state with bytes from EncodeState() of a strategy built
  // from the same config. Fails with kInvalidArgument, changing nothing, if
  // the bytes do not fit.
  virtual absl::Status DecodeState(std::string_view bytes) {
    if (!bytes.empty()) {
      return absl::InvalidArgumentError(
          "checkpoint: strategy state given to a stateless strategy");
    }
    return absl::OkStatus();
  }
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_STRATEGY_H_
