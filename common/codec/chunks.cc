#include "common/codec/chunks.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/codec/flat_bytes.h"

namespace fedsim {

std::int64_t ChunkLength(std::int64_t total, std::int64_t chunk_bytes,
                         std::int64_t offset) {
  return std::max<std::int64_t>(0, std::min(chunk_bytes, total - offset));
}

std::string DigestPrefix(absl::string_view digest) {
  if (digest.empty()) return "(none)";
  return absl::BytesToHexString(digest.substr(0, 8));
}

absl::Status CheckChunkOffset(absl::string_view what, std::int64_t total,
                              std::int64_t chunk_bytes, std::int64_t offset) {
  if (chunk_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), ": chunk_bytes = ", chunk_bytes, "; must be > 0"));
  }
  if (offset < 0 || offset >= total || offset % chunk_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), ".offset = ", offset, "; must be in [0, ", total,
        ") and a multiple of chunk_bytes = ", chunk_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckChunk(absl::string_view what, std::int64_t total,
                        std::int64_t chunk_bytes, std::int64_t offset,
                        absl::string_view data, absl::string_view sha256) {
  if (absl::Status s = CheckChunkOffset(what, total, chunk_bytes, offset); !s.ok()) {
    return s;
  }
  const std::int64_t want = ChunkLength(total, chunk_bytes, offset);
  const auto got = static_cast<std::int64_t>(data.size());
  if (got != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), ".data is ", got, " bytes at offset ", offset,
        "; must be ", want, " (min(chunk_bytes = ", chunk_bytes, ", size ", total,
        " - offset))", got < want ? ": truncated chunk" : ""));
  }
  const std::string digest = Sha256Digest(data);
  if (sha256 != digest) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), ".sha256 = ", DigestPrefix(sha256), "... at offset ",
        offset, "; must be the SHA-256 of the chunk's ", got, " bytes (",
        DigestPrefix(digest), "...): bad checksum"));
  }
  return absl::OkStatus();
}

absl::Status CheckAssembled(absl::string_view what, absl::string_view bytes,
                            std::int64_t size, absl::string_view sha256) {
  const auto got = static_cast<std::int64_t>(bytes.size());
  if (got != size) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), ": assembled ", got, " bytes; must equal ChunkRef.size = ",
        size));
  }
  const std::string digest = Sha256Digest(bytes);
  if (sha256 != digest) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(what), ": ChunkRef.sha256 = ", DigestPrefix(sha256),
        "...; must be the SHA-256 of the assembled ", got, " bytes (",
        DigestPrefix(digest), "...)"));
  }
  return absl::OkStatus();
}

}  // namespace fedsim
