// File: common/codec/chunks.h
//
// Rules for large byte fields that travel in chunks (FetchChunk /
// UploadChunk, proto/fedsim/v1/service.proto; docs/reliability.md,
// "Messages, chunks and caps"). A field of `total` bytes is cut into chunks
// of `chunk_bytes`; every chunk but the last is full, so a chunk's offset is
// a multiple of chunk_bytes and its length is fixed by its offset. Each chunk
// carries the SHA-256 of its bytes; the whole field is described by its size
// and SHA-256 (ChunkRef). Both sides check with the same functions.
//
// Every failure is kInvalidArgument with a one-line reason naming the field,
// the value and the rule.
#ifndef FEDSIM_COMMON_CODEC_CHUNKS_H_
#define FEDSIM_COMMON_CODEC_CHUNKS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedsim {

// Length of the chunk at `offset` (min(chunk_bytes, total - offset)).
std::int64_t ChunkLength(std::int64_t total, std::int64_t chunk_bytes,
                         std::int64_t offset);

// Checks where a chunk may start: 0 <= offset < total, offset a multiple of
// chunk_bytes. `what` names the request, e.g. "UploadChunk".
absl::Status CheckChunkOffset(absl::string_view what, std::int64_t total,
                              std::int64_t chunk_bytes, std::int64_t offset);

// Checks one received chunk: its offset (as above), its length (exactly
// ChunkLength: a shorter one is truncated) and its checksum (`sha256` must
// be the 32-byte SHA-256 of `data`).
absl::Status CheckChunk(absl::string_view what, std::int64_t total,
                        std::int64_t chunk_bytes, std::int64_t offset,
                        absl::string_view data, absl::string_view sha256);

// Checks an assembled field against its ChunkRef: length, then SHA-256.
absl::Status CheckAssembled(absl::string_view what, absl::string_view bytes,
                            std::int64_t size, absl::string_view sha256);

// The first 8 bytes of a digest in hex, for messages ("(none)" if empty).
std::string DigestPrefix(absl::string_view digest);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_CODEC_CHUNKS_H_
