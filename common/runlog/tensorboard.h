// File: common/runlog/tensorboard.h
//
// TensorBoard event files (logging.tensorboard; docs/report.md): a TFRecord
// file of tensorflow.Event records, one record per round with a scalar
// summary per measured metric, so `tensorboard --logdir runs` shows fedsim
// runs. The header exposes no protobuf types.
//
// TFRecord framing of each record: uint64 length, uint32 masked CRC-32C of
// the length bytes, the bytes, uint32 masked CRC-32C of the bytes (all
// little-endian).
#ifndef FEDSIM_COMMON_RUNLOG_TENSORBOARD_H_
#define FEDSIM_COMMON_RUNLOG_TENSORBOARD_H_

#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace fedsim {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses.
std::uint32_t Crc32c(std::string_view bytes);
// TFRecord's masking: rotate right by 15 bits, add 0xa282ead8.
std::uint32_t MaskCrc32c(std::uint32_t crc);
// One framed TFRecord record holding `payload`.
std::string TfRecord(std::string_view payload);

class TensorBoardWriter {
 public:
  // Creates (truncating) the event file `path` and writes its first record,
  // file_version "brain.Event:2".
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Create(
      const std::string& path, double wall_time);

  // A resumed run (first round `first_step`): rewrites `path` (atomically,
  // through path.tmp) with its file_version record and every Event of a
  // step below `first_step`, leaving out the steps the run will redo (and
  // any record cut short by a crash, and everything after it), then appends
  // to it. So every reader, with or without TensorBoard's purging of
  // orphaned data, sees each round once, with the values of the run that
  // finished it. Without a file at `path`, Create.
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Resume(
      const std::string& path, double wall_time, std::int64_t first_step);

  // Appends one Event at `step` with a scalar summary per (tag, value) and
  // flushes. Values are stored as float (TensorBoard's simple_value).
  absl::Status Scalars(std::int64_t step, double wall_time,
                       const std::vector<std::pair<std::string, double>>& values);

 private:
  explicit TensorBoardWriter(std::ofstream out) : out_(std::move(out)) {}
  // The payloads of `bytes`' TFRecord records up to the first one whose
  // framing or CRC is wrong.
  static std::vector<std::string> ReadRecords(std::string_view bytes);
  std::ofstream out_;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_RUNLOG_TENSORBOARD_H_
