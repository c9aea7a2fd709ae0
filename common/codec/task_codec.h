// File: common/codec/task_codec.h
//
// Conversions between the C++ task values (common/base/task.h) and the
// fedsim.v1 wire messages, done once at the edge of each transport.
// Decoding validates sizes and values before anything is allocated.
#ifndef FEDSIM_COMMON_CODEC_TASK_CODEC_H_
#define FEDSIM_COMMON_CODEC_TASK_CODEC_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "fedsim/v1/service.pb.h"

namespace fedsim {

void EncodeTask(const Task& task, v1::Task& out);
// Fails with kInvalidArgument if the parameters are not `dim` finite values.
absl::StatusOr<Task> DecodeTask(const v1::Task& msg, std::int64_t dim);

void EncodeResult(const ClientResult& result, v1::Result& out);
// Fails with kInvalidArgument if the update is not `dim` finite values.
absl::StatusOr<ClientResult> DecodeResult(const v1::Result& msg,
                                          std::int64_t dim);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_CODEC_TASK_CODEC_H_
