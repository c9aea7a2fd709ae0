// File: common/codec/task_codec.h
//
// Conversions between the C++ task values (common/base/task.h) and the
// fedsim.v1 wire messages, done once at the edge of each transport.
// Decoding validates sizes and values before anything is allocated.
#ifndef FEDSIM_COMMON_CODEC_TASK_CODEC_H_
#define FEDSIM_COMMON_CODEC_TASK_CODEC_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "fedsim/v1/service.pb.h"

namespace fedsim {

// The vector a task's wire field server_control carries: SCAFFOLD's c
// (with scaffold_option) or SCAFFLSA's anchor (without, with anchor_round);
// null when neither.
std::shared_ptr<const FlatVector> WireServerControl(const Task& task);

// Task.client_state and Result.client_state travel with the message when
// the C++ value has one.
void EncodeTask(const Task& task, v1::Task& out);
// Fails with kInvalidArgument if the parameters are not `dim` finite values
// or the client state does not decode.
absl::StatusOr<Task> DecodeTask(const v1::Task& msg, std::int64_t dim);

void EncodeResult(const ClientResult& result, v1::Result& out);
// Fails with kInvalidArgument if the update is not `dim` finite values.
absl::StatusOr<ClientResult> DecodeResult(const v1::Result& msg,
                                          std::int64_t dim);

// A client state as a ClientStateBlob (vectors in name order).
void EncodeClientState(const ClientState& state, v1::ClientStateBlob& out);
// Fails with kInvalidArgument, naming `what`, for a vector whose byte length
// is not a multiple of 8, a NaN or infinite value, or a repeated name.
// Names and sizes are checked against the algorithm by CheckClientState.
absl::StatusOr<ClientState> DecodeClientState(const v1::ClientStateBlob& msg,
                                              absl::string_view what);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_CODEC_TASK_CODEC_H_
