#include "common/runlog/tensorboard.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "tensorboard/event.pb.h"

namespace fedsim {
namespace {

std::array<std::uint32_t, 256> MakeCrcTable() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 1u) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    table[i] = crc;
  }
  return table;
}

void AppendLittleEndian(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFFu));
  }
}

}  // namespace

std::uint32_t Crc32c(std::string_view bytes) {
  static const std::array<std::uint32_t, 256> kTable = MakeCrcTable();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (const char c : bytes) {
    crc = kTable[(crc ^ static_cast<unsigned char>(c)) & 0xFFu] ^ (crc >> 8);
  }
  return crc ^ 0xFFFFFFFFu;
}

std::uint32_t MaskCrc32c(std::uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string TfRecord(std::string_view payload) {
  std::string header;
  AppendLittleEndian(header, payload.size(), 8);
  std::string record = header;
  AppendLittleEndian(record, MaskCrc32c(Crc32c(header)), 4);
  record.append(payload);
  AppendLittleEndian(record, MaskCrc32c(Crc32c(payload)), 4);
  return record;
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Create(
    const std::string& path, double wall_time) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot create the TensorBoard event file"));
  }
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(0);
  event.set_file_version("brain.Event:2");
  out << TfRecord(event.SerializeAsString()) << std::flush;
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return std::unique_ptr<TensorBoardWriter>(new TensorBoardWriter(std::move(out)));
}

std::vector<std::string> TensorBoardWriter::ReadRecords(std::string_view bytes) {
  const auto le = [&](std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
    }
    return v;
  };
  std::vector<std::string> records;
  std::size_t at = 0;
  while (bytes.size() - at >= 12) {
    const std::uint64_t length = le(at, 8);
    if (static_cast<std::uint32_t>(le(at + 8, 4)) != MaskCrc32c(Crc32c(bytes.substr(at, 8))) ||
        length > bytes.size() - at - 16) {
      break;
    }
    const std::string_view payload = bytes.substr(at + 12, length);
    if (static_cast<std::uint32_t>(le(at + 12 + length, 4)) != MaskCrc32c(Crc32c(payload))) {
      break;
    }
    records.emplace_back(payload);
    at += 16 + length;
  }
  return records;
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Resume(
    const std::string& path, double wall_time, std::int64_t first_step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Create(path, wall_time);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  std::string kept;
  for (const std::string& payload : ReadRecords(bytes)) {
    tensorboard::Event event;
    if (!event.ParseFromString(payload)) break;
    // The file version, and the rounds before the resumed one. Not: the
    // rounds to be redone, SessionLog records of older fedsim versions.
    if (!event.file_version().empty() ||
        (event.has_summary() && event.step() < first_step)) {
      kept += TfRecord(payload);
    }
  }
  if (kept.empty()) return Create(path, wall_time);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kept << std::flush;
    if (!out) return absl::DataLossError(absl::StrCat(tmp, ": write failed"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::DataLossError(absl::StrCat(path, ": cannot replace it: ", ec.message()));
  std::ofstream out(path, std::ios::binary | std::ios::app);
  if (!out) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot open the TensorBoard event file"));
  }
  return std::unique_ptr<TensorBoardWriter>(new TensorBoardWriter(std::move(out)));
}

absl::Status TensorBoardWriter::Scalars(
    std::int64_t step, double wall_time,
    const std::vector<std::pair<std::string, double>>& values) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : values) {
    tensorboard::SummaryValue* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  out_ << TfRecord(event.SerializeAsString()) << std::flush;
  if (!out_) return absl::DataLossError("TensorBoard event file: write failed");
  return absl::OkStatus();
}

}  // namespace fedsim
