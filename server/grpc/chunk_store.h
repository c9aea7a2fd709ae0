// File: server/grpc/chunk_store.h
//
// The coordinator's side of chunked transfer and of the per-worker caps
// (docs/reliability.md, "Messages, chunks and caps"):
//
//   * OffloadTask: a task field larger than chunk_bytes leaves the PullTask
//     reply and is described by a ChunkRef (size, SHA-256, model version).
//     The client state travels as its serialised ClientStateBlob.
//   * Fetch: one chunk of such a field, sliced from the task the
//     Coordinator still holds (no copy is kept here).
//   * Upload / ResolveResult: chunks of a result field are checked (offset,
//     length, checksum) and appended in order; PushResult then takes the
//     assembled bytes, checked against the result's ChunkRef (length and
//     SHA-256 of the whole), before the update reaches validation.
//   * Caps: partial uploads per worker, bytes held by all partial uploads,
//     and calls in flight per worker (PushResult and UploadChunk). Past a
//     cap: kResourceExhausted. Partial uploads of tasks that are no longer
//     open are freed when the next upload starts, and all of a worker's
//     when it leaves.
//
// Thread safety: all methods are thread-safe.
#ifndef FEDSIM_SERVER_GRPC_CHUNK_STORE_H_
#define FEDSIM_SERVER_GRPC_CHUNK_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "fedsim/v1/service.pb.h"
#include "server/coordinator/coordinator.h"

namespace fedsim {

class ChunkStore {
 public:
  struct Limits {
    std::int64_t chunk_bytes = 1 << 20;
    int max_inflight_per_worker = 16;            // calls and partial uploads
    std::int64_t max_buffer_bytes = std::int64_t{1} << 30;
    // Largest serialised client state a result may upload (0: the
    // algorithm keeps none, so CHUNK_FIELD_CLIENT_STATE is refused).
    std::int64_t max_client_state_bytes = 0;
  };

  // `coordinator` must outlive the store; `dim` is the model dimension.
  ChunkStore(const Limits& limits, Coordinator* coordinator, std::int64_t dim);

  // Moves fields of `msg` (the encoding of `task`) larger than chunk_bytes
  // into ChunkRefs. The SHA-256 of a vector shared by many tasks (a round's
  // global model) is computed once.
  void OffloadTask(const Task& task, v1::Task& msg);

  absl::Status Fetch(const v1::FetchChunkRequest& request,
                     v1::FetchChunkResponse* response) const;
  absl::Status Upload(const v1::UploadChunkRequest& request,
                      v1::UploadChunkResponse* response);
  // Replaces the ChunkRefs of `result` by the assembled, checked bytes of
  // `worker`'s uploads (which are then freed). No-op without ChunkRefs.
  absl::Status ResolveResult(WorkerId worker, v1::Result& result);
  // Frees every partial upload of `worker`.
  void DropWorker(WorkerId worker);

  // Counts a PushResult / UploadChunk call of `worker` in flight; fails with
  // kResourceExhausted past max_inflight_per_worker. Release when done.
  absl::Status AcquireCall(WorkerId worker, const char* rpc);
  void ReleaseCall(WorkerId worker);

  std::int64_t bytes_held() const;
  int uploads_held() const;

 private:
  struct Partial {
    std::int64_t total = 0;
    std::string bytes;  // received so far, reserved to total
  };
  // (worker, task, field)
  using Key = std::tuple<std::int64_t, std::int64_t, int>;

  // Frees partial uploads whose task is no longer open for their worker.
  void SweepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SHA-256 of the encoding of `v`, cached for the last few vectors.
  std::string DigestOf(const std::shared_ptr<const FlatVector>& v,
                       const std::string& encoded);
  void EraseLocked(std::map<Key, Partial>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The serialised ClientStateBlob of `state`, cached for the last few
  // states (`serialised`, if given, is it already), so that fetching a
  // state in k chunks serialises it once, not k times.
  std::shared_ptr<const std::string> StateBytes(
      const std::shared_ptr<const ClientState>& state,
      std::string* serialised = nullptr) const;

  const Limits limits_;
  Coordinator* const coordinator_;
  const std::int64_t dim_;
  mutable std::mutex mu_;
  std::map<Key, Partial> uploads_ ABSL_GUARDED_BY(mu_);
  std::map<std::int64_t, int> uploads_per_worker_ ABSL_GUARDED_BY(mu_);
  std::map<std::int64_t, int> calls_ ABSL_GUARDED_BY(mu_);
  std::int64_t held_ ABSL_GUARDED_BY(mu_) = 0;
  std::mutex digest_mu_;
  std::vector<std::pair<std::weak_ptr<const FlatVector>, std::string>> digests_
      ABSL_GUARDED_BY(digest_mu_);
  mutable std::mutex state_mu_;
  mutable std::vector<std::pair<std::weak_ptr<const ClientState>,
                                std::shared_ptr<const std::string>>>
      states_ ABSL_GUARDED_BY(state_mu_);
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_GRPC_CHUNK_STORE_H_
