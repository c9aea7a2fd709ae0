#include "server/grpc/chunk_store.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/codec/chunks.h"
#include "common/codec/flat_bytes.h"
#include "common/codec/task_codec.h"

namespace fedsim {
namespace {

const char* FieldName(int field) {
  switch (field) {
    case v1::CHUNK_FIELD_PARAMETERS: return "parameters";
    case v1::CHUNK_FIELD_SERVER_CONTROL: return "server_control";
    case v1::CHUNK_FIELD_UPDATE: return "update";
    case v1::CHUNK_FIELD_CONTROL_DELTA: return "control_delta";
    case v1::CHUNK_FIELD_CLIENT_STATE: return "client_state";
    default: return "unspecified";
  }
}

void Offload(std::string* bytes, v1::ChunkRef* ref, std::int64_t version,
             std::string digest) {
  ref->set_size(static_cast<std::int64_t>(bytes->size()));
  ref->set_sha256(std::move(digest));
  ref->set_model_version(version);
  bytes->clear();
  bytes->shrink_to_fit();
}

}  // namespace

ChunkStore::ChunkStore(const Limits& limits, Coordinator* coordinator,
                       std::int64_t dim)
    : limits_(limits), coordinator_(coordinator), dim_(dim) {}

void ChunkStore::OffloadTask(const Task& task, v1::Task& msg) {
  const auto chunk = static_cast<std::size_t>(limits_.chunk_bytes);
  if (msg.parameters().size() > chunk) {
    Offload(msg.mutable_parameters(), msg.mutable_parameters_ref(), msg.round(),
            DigestOf(task.params, msg.parameters()));
  }
  if (msg.server_control().size() > chunk) {
    Offload(msg.mutable_server_control(), msg.mutable_server_control_ref(),
            msg.round(), DigestOf(WireServerControl(task), msg.server_control()));
  }
  if (msg.has_client_state() && msg.client_state().ByteSizeLong() > chunk) {
    std::string serialised = msg.client_state().SerializeAsString();
    msg.clear_client_state();
    // Keeps the bytes for the worker's FetchChunk calls.
    const std::shared_ptr<const std::string> bytes =
        task.client_state != nullptr ? StateBytes(task.client_state, &serialised)
                                     : std::make_shared<const std::string>(std::move(serialised));
    v1::ChunkRef* ref = msg.mutable_client_state_ref();
    ref->set_size(static_cast<std::int64_t>(bytes->size()));
    ref->set_sha256(Sha256Digest(*bytes));
    ref->set_model_version(msg.round());
  }
}

std::shared_ptr<const std::string> ChunkStore::StateBytes(
    const std::shared_ptr<const ClientState>& state, std::string* serialised) const {
  std::unique_lock<std::mutex> lock(state_mu_);
  for (const auto& [weak, bytes] : states_) {
    // A live weak_ptr to the same state: the state is immutable (const).
    if (!weak.expired() && weak.lock() == state) return bytes;
  }
  std::shared_ptr<const std::string> bytes;
  if (serialised != nullptr) {
    bytes = std::make_shared<const std::string>(std::move(*serialised));
  } else {
    v1::ClientStateBlob blob;
    EncodeClientState(*state, blob);
    bytes = std::make_shared<const std::string>(blob.SerializeAsString());
  }
  states_.erase(std::remove_if(states_.begin(), states_.end(),
                               [](const auto& e) { return e.first.expired(); }),
                states_.end());
  // Every task in flight may hold a state: keep a few per in-flight slot.
  if (states_.size() >= 64) states_.erase(states_.begin());
  states_.emplace_back(state, bytes);
  return bytes;
}

std::string ChunkStore::DigestOf(const std::shared_ptr<const FlatVector>& v,
                                 const std::string& encoded) {
  std::unique_lock<std::mutex> lock(digest_mu_);
  for (const auto& [weak, digest] : digests_) {
    // A live weak_ptr to the same vector: the vector is immutable (const).
    if (!weak.expired() && weak.lock() == v) return digest;
  }
  std::string digest = Sha256Digest(encoded);
  digests_.erase(std::remove_if(digests_.begin(), digests_.end(),
                                [](const auto& e) { return e.first.expired(); }),
                 digests_.end());
  if (digests_.size() >= 8) digests_.erase(digests_.begin());
  digests_.emplace_back(v, digest);
  return digest;
}

absl::Status ChunkStore::Fetch(const v1::FetchChunkRequest& request,
                               v1::FetchChunkResponse* response) const {
  const int field = request.field();
  if (field != v1::CHUNK_FIELD_PARAMETERS && field != v1::CHUNK_FIELD_SERVER_CONTROL &&
      field != v1::CHUNK_FIELD_CLIENT_STATE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FetchChunk.field = ", field,
        "; must be CHUNK_FIELD_PARAMETERS (1), CHUNK_FIELD_SERVER_CONTROL (2) or "
        "CHUNK_FIELD_CLIENT_STATE (50)"));
  }
  if (request.length() <= 0 || request.length() > limits_.chunk_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("FetchChunk.length = ", request.length(),
                     "; must be in [1, chunk_bytes = ", limits_.chunk_bytes, "]"));
  }
  const auto task_id = static_cast<std::int64_t>(request.task_id());
  FEDSIM_ASSIGN_OR_RETURN(
      Task task, coordinator_->IssuedTask(
                     WorkerId(static_cast<std::int64_t>(request.worker_id())), task_id));
  const std::shared_ptr<const FlatVector> control = WireServerControl(task);
  const FlatVector* v = field == v1::CHUNK_FIELD_PARAMETERS ? task.params.get() : control.get();
  // The serialised ClientStateBlob (client_state).
  std::shared_ptr<const std::string> state_bytes;
  if (field == v1::CHUNK_FIELD_CLIENT_STATE) {
    v = nullptr;
    if (task.client_state != nullptr) state_bytes = StateBytes(task.client_state);
  }
  if (v == nullptr && (field != v1::CHUNK_FIELD_CLIENT_STATE || task.client_state == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FetchChunk.field = ", FieldName(field), "; task ", task_id, " has none"));
  }
  const auto total = v != nullptr ? static_cast<std::int64_t>(v->size() * sizeof(double))
                                  : static_cast<std::int64_t>(state_bytes->size());
  FEDSIM_RETURN_IF_ERROR(
      CheckChunkOffset("FetchChunk", total, limits_.chunk_bytes, request.offset()));
  const std::int64_t want = ChunkLength(total, limits_.chunk_bytes, request.offset());
  if (request.length() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FetchChunk.length = ", request.length(), " at offset ", request.offset(),
        "; must be ", want, " (min(chunk_bytes = ", limits_.chunk_bytes, ", size ",
        total, " - offset))"));
  }
  std::string data(static_cast<std::size_t>(want), '\0');
  // Little-endian hosts only (static_assert in common/codec/flat_bytes.cc).
  const char* source = v != nullptr ? reinterpret_cast<const char*>(v->data())
                                    : state_bytes->data();
  std::memcpy(data.data(), source + request.offset(), data.size());
  response->set_offset(request.offset());
  response->set_sha256(Sha256Digest(data));
  response->set_data(std::move(data));
  return absl::OkStatus();
}

absl::Status ChunkStore::Upload(const v1::UploadChunkRequest& request,
                                v1::UploadChunkResponse* response) {
  const int field = request.field();
  if (field != v1::CHUNK_FIELD_UPDATE && field != v1::CHUNK_FIELD_CONTROL_DELTA &&
      field != v1::CHUNK_FIELD_CLIENT_STATE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadChunk.field = ", field,
        "; must be CHUNK_FIELD_UPDATE (3), CHUNK_FIELD_CONTROL_DELTA (4) or "
        "CHUNK_FIELD_CLIENT_STATE (50)"));
  }
  std::int64_t expected = dim_ * static_cast<std::int64_t>(sizeof(double));
  if (field == v1::CHUNK_FIELD_CLIENT_STATE) {
    // A serialised ClientStateBlob: its size depends on the vectors held.
    if (request.total_size() < 1 ||
        request.total_size() > limits_.max_client_state_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "UploadChunk.total_size = ", request.total_size(),
          " for client_state; must be in [1, ", limits_.max_client_state_bytes,
          "] (the largest state this algorithm keeps)"));
    }
    expected = request.total_size();
  } else if (request.total_size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadChunk.total_size = ", request.total_size(), "; must be 8 * d = ",
        expected, " (the field's exact size)"));
  }
  FEDSIM_RETURN_IF_ERROR(CheckChunk("UploadChunk", expected, limits_.chunk_bytes,
                                    request.offset(), request.data(),
                                    request.sha256()));
  const WorkerId worker(static_cast<std::int64_t>(request.worker_id()));
  const auto task = static_cast<std::int64_t>(request.task_id());
  FEDSIM_RETURN_IF_ERROR(coordinator_->IssuedTask(worker, task).status());

  std::unique_lock<std::mutex> lock(mu_);
  const Key key{worker.value, task, field};
  auto it = uploads_.find(key);
  if (request.offset() == 0) {
    if (it != uploads_.end() && it->second.total == expected) {
      it->second.bytes.clear();  // a restarted upload keeps its reservation
    } else {
      if (it != uploads_.end()) EraseLocked(it);  // restarted with another size
      SweepLocked();
      auto per = uploads_per_worker_.find(worker.value);
      const int held = per == uploads_per_worker_.end() ? 0 : per->second;
      if (held >= limits_.max_inflight_per_worker) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "UploadChunk: worker ", worker.value, " holds ", held,
            " partial uploads; distributed.max_inflight_per_worker = ",
            limits_.max_inflight_per_worker));
      }
      if (held_ + expected > limits_.max_buffer_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "UploadChunk: partial uploads hold ", held_, " bytes; ", expected,
            " more would exceed distributed.max_upload_buffer_bytes = ",
            limits_.max_buffer_bytes));
      }
      it = uploads_.emplace(key, Partial{expected, {}}).first;
      it->second.bytes.reserve(static_cast<std::size_t>(expected));
      held_ += expected;
      ++uploads_per_worker_[worker.value];
    }
  } else if (it == uploads_.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadChunk.offset = ", request.offset(), "; no upload of task ", task,
        " field ", FieldName(field), " is in progress (the first chunk has offset 0)"));
  } else if (it->second.total != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadChunk.total_size = ", expected, "; the upload of task ", task, " field ",
        FieldName(field), " in progress has ", it->second.total,
        " (offset 0 restarts an upload)"));
  }
  std::string& bytes = it->second.bytes;
  const auto received = static_cast<std::int64_t>(bytes.size());
  if (request.offset() < received) {
    // A retried chunk: accepted if it is the same as the one held.
    if (bytes.compare(static_cast<std::size_t>(request.offset()),
                      request.data().size(), request.data()) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "UploadChunk.offset = ", request.offset(),
          "; the chunk differs from the one already received there"));
    }
  } else if (request.offset() > received) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadChunk.offset = ", request.offset(), "; must be at most ", received,
        " (the bytes received so far; chunks go in order)"));
  } else {
    bytes.append(request.data());
  }
  response->set_received(static_cast<std::int64_t>(bytes.size()));
  return absl::OkStatus();
}

absl::Status ChunkStore::ResolveResult(WorkerId worker, v1::Result& result) {
  struct FieldRef {
    int field;
    bool has_ref;
    const v1::ChunkRef* ref;
    std::string* bytes;
    const char* name;
  };
  const FieldRef fields[] = {
      {v1::CHUNK_FIELD_UPDATE, result.has_update_ref(), &result.update_ref(),
       result.mutable_update(), "update"},
      {v1::CHUNK_FIELD_CONTROL_DELTA, result.has_control_delta_ref(),
       &result.control_delta_ref(), result.mutable_control_delta(), "control_delta"},
  };
  const auto task = static_cast<std::int64_t>(result.task_id());
  for (const FieldRef& f : fields) {
    if (!f.has_ref) continue;
    if (!f.bytes->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Result.", f.name, " and Result.", f.name, "_ref are both set; one may be"));
    }
    Partial partial;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto it = uploads_.find(Key{worker.value, task, f.field});
      if (it == uploads_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Result.", f.name, "_ref: worker ", worker.value, " has no upload of task ",
            task, " (UploadChunk comes first)"));
      }
      partial = std::move(it->second);
      EraseLocked(it);
    }
    const auto received = static_cast<std::int64_t>(partial.bytes.size());
    if (received != partial.total) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Result.", f.name, "_ref: the upload of task ", task, " is incomplete: ",
          received, " of ", partial.total, " bytes received"));
    }
    FEDSIM_RETURN_IF_ERROR(CheckAssembled(absl::StrCat("Result.", f.name, "_ref"),
                                          partial.bytes, f.ref->size(),
                                          f.ref->sha256()));
    *f.bytes = std::move(partial.bytes);
  }
  result.clear_update_ref();
  result.clear_control_delta_ref();
  if (result.has_client_state_ref()) {
    if (result.has_client_state()) {
      return absl::InvalidArgumentError(
          "Result.client_state and Result.client_state_ref are both set; one may be");
    }
    Partial partial;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto it = uploads_.find(Key{worker.value, task, v1::CHUNK_FIELD_CLIENT_STATE});
      if (it == uploads_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Result.client_state_ref: worker ", worker.value, " has no upload of task ",
            task, " (UploadChunk comes first)"));
      }
      partial = std::move(it->second);
      EraseLocked(it);
    }
    const auto received = static_cast<std::int64_t>(partial.bytes.size());
    if (received != partial.total) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Result.client_state_ref: the upload of task ", task, " is incomplete: ",
          received, " of ", partial.total, " bytes received"));
    }
    FEDSIM_RETURN_IF_ERROR(CheckAssembled("Result.client_state_ref", partial.bytes,
                                          result.client_state_ref().size(),
                                          result.client_state_ref().sha256()));
    if (!result.mutable_client_state()->ParseFromString(partial.bytes)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Result.client_state_ref: the ", partial.bytes.size(),
          " bytes of task ", task, " are not a ClientStateBlob"));
    }
    result.clear_client_state_ref();
  }
  return absl::OkStatus();
}

void ChunkStore::DropWorker(WorkerId worker) {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    auto next = std::next(it);
    if (std::get<0>(it->first) == worker.value) EraseLocked(it);
    it = next;
  }
}

absl::Status ChunkStore::AcquireCall(WorkerId worker, const char* rpc) {
  std::unique_lock<std::mutex> lock(mu_);
  int& n = calls_[worker.value];
  if (n >= limits_.max_inflight_per_worker) {
    const int now = n;
    if (n == 0) calls_.erase(worker.value);
    return absl::ResourceExhaustedError(absl::StrCat(
        rpc, ": worker ", worker.value, " has ", now,
        " calls in flight; distributed.max_inflight_per_worker = ",
        limits_.max_inflight_per_worker));
  }
  ++n;
  return absl::OkStatus();
}

void ChunkStore::ReleaseCall(WorkerId worker) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = calls_.find(worker.value);
  if (it != calls_.end() && --it->second <= 0) calls_.erase(it);
}

std::int64_t ChunkStore::bytes_held() const {
  std::unique_lock<std::mutex> lock(mu_);
  return held_;
}

int ChunkStore::uploads_held() const {
  std::unique_lock<std::mutex> lock(mu_);
  return static_cast<int>(uploads_.size());
}

void ChunkStore::SweepLocked() {
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    auto next = std::next(it);
    const auto& [worker, task, field] = it->first;
    if (!coordinator_->IssuedTask(WorkerId(worker), task).ok()) EraseLocked(it);
    it = next;
  }
}

void ChunkStore::EraseLocked(std::map<Key, Partial>::iterator it) {
  held_ -= it->second.total;
  const std::int64_t worker = std::get<0>(it->first);
  if (--uploads_per_worker_[worker] <= 0) uploads_per_worker_.erase(worker);
  uploads_.erase(it);
}

}  // namespace fedsim
