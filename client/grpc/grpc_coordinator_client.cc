#include "client/grpc/grpc_coordinator_client.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/grpc/credentials.h"
#include "common/base/build_info.h"
#include "common/base/keepalive.h"
#include "common/codec/chunks.h"
#include "common/codec/flat_bytes.h"
#include "common/codec/task_codec.h"
#include "fedsim/v1/service.grpc.pb.h"
#include "common/base/status_macros.h"
#include "grpcpp/grpcpp.h"

namespace fedsim {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

class GrpcCoordinatorClient : public CoordinatorClient {
 public:
  explicit GrpcCoordinatorClient(const GrpcClientOptions& options)
      : options_(options) {
    Connect(options.max_message_bytes);
  }

  // (Re)creates the channel with `max_message_bytes` as the send and
  // receive limit, the same as the coordinator's.
  void Connect(std::int64_t max_message_bytes) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
    args.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
    // Keepalive pings, also during a long poll and between calls: a
    // connection that died silently (the worker's network cut and
    // restored, its address changed, a NAT dropped it) fails within
    // ~10 s and the channel reconnects, instead of every later call timing
    // out on the dead TCP connection until the kernel gives up (~15 min).
    // The coordinator's server permits pings this often.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kClientKeepaliveTimeMs);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    ApplyChannelAuthArgs(options_.auth, args);
    auto channel = options_.channel != nullptr
                       ? options_.channel
                       : grpc::CreateCustomChannel(options_.target,
                                                   MakeChannelCredentials(options_.auth), args);
    std::shared_ptr<v1::Coordinator::Stub> stub = v1::Coordinator::NewStub(channel);
    std::unique_lock<std::mutex> lock(mu_);
    channel_ = std::move(channel);
    stub_ = std::move(stub);
    max_message_bytes_ = max_message_bytes;
  }

  std::shared_ptr<v1::Coordinator::Stub> stub() const {
    std::unique_lock<std::mutex> lock(mu_);
    return stub_;
  }
  std::int64_t chunk_bytes() const {
    std::unique_lock<std::mutex> lock(mu_);
    return chunk_bytes_;
  }

  absl::StatusOr<JoinReply> Join(const std::string& worker_name) override {
    grpc::ClientContext ctx;
    SetDeadline(ctx, options_.rpc_timeout);
    // Over TLS, fail fast instead of waiting for a channel that cannot
    // connect: the worker retries UNAVAILABLE itself (with backoff, up to
    // --max_unreachable_s), and a failed handshake must be seen (and not
    // retried) rather than waited out. Plaintext keeps waiting for ready.
    if (options_.auth.mode == AuthMode::kTls || options_.auth.mode == AuthMode::kMtls) {
      ctx.set_wait_for_ready(false);
    }
    Tracked tracked(this, &ctx);
    if (tracked.cancelled()) return absl::CancelledError("worker stopping");
    v1::JoinRequest request;
    request.set_worker_name(worker_name);
    request.set_build_isa(std::string(BuildIsa()));
    SignJoinRequest(options_.auth, absl::Now(), request);
    v1::JoinResponse response;
    grpc::Status s = stub()->Join(&ctx, request, &response);
    if (!s.ok()) return ExplainJoinFailure(options_.auth, options_.target, FromGrpc(s));
    {
      std::lock_guard<std::mutex> lock(mu_);
      session_ = response.session();
    }
    // Adopt the run's limits: the coordinator uses the same.
    const auto& dist = response.config().distributed();
    if (dist.chunk_bytes() > 0) {
      std::unique_lock<std::mutex> lock(mu_);
      chunk_bytes_ = dist.chunk_bytes();
    }
    if (dist.max_message_bytes() > 0 && dist.max_message_bytes() != max_message_bytes()) {
      Connect(dist.max_message_bytes());
    }
    JoinReply reply;
    reply.worker = WorkerId(static_cast<std::int64_t>(response.worker_id()));
    reply.run_id = response.run_id();
    reply.config = response.config();
    // 0: a coordinator from before the field; anything below 1 is full speed.
    reply.slowdown = response.slowdown() >= 1.0 && std::isfinite(response.slowdown())
                         ? response.slowdown()
                         : 1.0;
    return reply;
  }

  absl::StatusOr<PullResult> PullTask(WorkerId worker, absl::Duration wait,
                                      std::int64_t dim) override {
    grpc::ClientContext ctx;
    // The coordinator answers within `wait`; leave room for the reply.
    SetDeadline(ctx, wait + absl::Seconds(5));
    Tracked tracked(this, &ctx);
    if (tracked.cancelled()) return absl::CancelledError("worker stopping");
    v1::PullTaskRequest request;
    request.set_worker_id(static_cast<std::uint64_t>(worker.value));
    v1::PullTaskResponse response;
    grpc::Status s = stub()->PullTask(&ctx, request, &response);
    if (!s.ok()) return FromGrpc(s);
    PullResult out;
    out.run_finished = response.run_finished();
    out.retry_after_ms = response.retry_after_ms();
    if (response.has_task()) {
      v1::Task* msg = response.mutable_task();
      absl::Status fetched = absl::OkStatus();
      if (msg->has_parameters_ref()) {
        fetched = Fetch(worker, *msg, v1::CHUNK_FIELD_PARAMETERS, msg->parameters_ref(),
                        dim, msg->mutable_parameters());
      }
      if (fetched.ok() && msg->has_server_control_ref()) {
        fetched = Fetch(worker, *msg, v1::CHUNK_FIELD_SERVER_CONTROL,
                        msg->server_control_ref(), dim, msg->mutable_server_control());
      }
      if (fetched.ok() && msg->has_client_state_ref()) {
        std::string state;
        fetched = Fetch(worker, *msg, v1::CHUNK_FIELD_CLIENT_STATE,
                        msg->client_state_ref(), dim, &state);
        if (fetched.ok() && !msg->mutable_client_state()->ParseFromString(state)) {
          fetched = absl::InvalidArgumentError(absl::StrCat(
              "task ", msg->task_id(), ": the fetched client_state is not a ClientStateBlob"));
        }
        msg->clear_client_state_ref();
      }
      if (absl::IsFailedPrecondition(fetched) || absl::IsPermissionDenied(fetched)) {
        // The task closed (round deadline) or moved while it was fetched:
        // there is nothing to do; poll again.
        return out;
      }
      if (!fetched.ok()) return fetched;
      absl::StatusOr<Task> task = DecodeTask(*msg, dim);
      if (!task.ok()) return task.status();
      out.task = *std::move(task);
    }
    return out;
  }

  absl::StatusOr<bool> PushResult(WorkerId worker,
                                  const ClientResult& result) override {
    grpc::ClientContext ctx;
    SetDeadline(ctx, options_.rpc_timeout);
    Tracked tracked(this, &ctx);
    if (tracked.cancelled()) return absl::CancelledError("worker stopping");
    v1::PushResultRequest request;
    request.set_worker_id(static_cast<std::uint64_t>(worker.value));
    v1::Result* msg = request.mutable_result();
    EncodeResult(result, *msg);
    const auto chunk = static_cast<std::size_t>(chunk_bytes());
    if (msg->update().size() > chunk) {
      FEDSIM_RETURN_IF_ERROR(Upload(worker, msg->task_id(), v1::CHUNK_FIELD_UPDATE,
                                    msg->mutable_update(), msg->mutable_update_ref()));
    }
    if (msg->control_delta().size() > chunk) {
      FEDSIM_RETURN_IF_ERROR(Upload(worker, msg->task_id(), v1::CHUNK_FIELD_CONTROL_DELTA,
                                    msg->mutable_control_delta(),
                                    msg->mutable_control_delta_ref()));
    }
    if (msg->has_client_state() && msg->client_state().ByteSizeLong() > chunk) {
      std::string state = msg->client_state().SerializeAsString();
      msg->clear_client_state();
      FEDSIM_RETURN_IF_ERROR(Upload(worker, msg->task_id(), v1::CHUNK_FIELD_CLIENT_STATE,
                                    &state, msg->mutable_client_state_ref()));
    }
    FEDSIM_RETURN_IF_ERROR(CheckSize("PushResult", request));
    v1::PushResultResponse response;
    grpc::Status s = stub()->PushResult(&ctx, request, &response);
    if (!s.ok()) return FromGrpc(s);
    return response.duplicate();
  }

  absl::Status Leave(WorkerId worker) override {
    grpc::ClientContext ctx;
    // Leave is quick; a stopping worker must not hang on a gone coordinator.
    SetDeadline(ctx, std::min(options_.rpc_timeout, absl::Seconds(5)));
    v1::LeaveRequest request;
    request.set_worker_id(static_cast<std::uint64_t>(worker.value));
    v1::LeaveResponse response;
    return FromGrpc(stub()->Leave(&ctx, request, &response));
  }

  absl::Status Heartbeat(WorkerId worker) override {
    grpc::ClientContext ctx;
    // Short and without wait-for-ready: a heartbeat that cannot go now is
    // useless later, and the worker must not wait on it when it exits.
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!session_.empty()) ctx.AddMetadata("fedsim-session", session_);
    }
    Tracked tracked(this, &ctx);
    if (tracked.cancelled()) return absl::CancelledError("worker stopping");
    v1::HeartbeatRequest request;
    request.set_worker_id(static_cast<std::uint64_t>(worker.value));
    v1::HeartbeatResponse response;
    return FromGrpc(stub()->Heartbeat(&ctx, request, &response));
  }

  void CancelCalls() override {
    std::lock_guard<std::mutex> lock(calls_mu_);
    cancelled_ = true;
    for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
  }

 private:
  std::int64_t max_message_bytes() const {
    std::unique_lock<std::mutex> lock(mu_);
    return max_message_bytes_;
  }

  // A message over the limit would fail in gRPC; say so before sending.
  absl::Status CheckSize(const char* rpc, const google::protobuf::Message& m) const {
    const auto size = static_cast<std::int64_t>(m.ByteSizeLong());
    if (size > max_message_bytes()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          rpc, " message is ", size, " bytes; over distributed.max_message_bytes = ",
          max_message_bytes()));
    }
    return absl::OkStatus();
  }

  // Fetches a task field described by `ref` chunk by chunk, checking every
  // chunk (offset, length, checksum) and then the whole (size, SHA-256).
  absl::Status Fetch(WorkerId worker, const v1::Task& task, v1::ChunkField field,
                     const v1::ChunkRef& ref, std::int64_t dim, std::string* out) {
    std::int64_t expected = dim * static_cast<std::int64_t>(sizeof(double));
    if (field == v1::CHUNK_FIELD_CLIENT_STATE) {
      // A serialised ClientStateBlob: at most a few vectors of d values.
      const std::int64_t most = 4 * expected + 1024;
      if (ref.size() < 1 || ref.size() > most) {
        return absl::InvalidArgumentError(absl::StrCat(
            "task ", task.task_id(), " client_state_ref.size = ", ref.size(),
            "; must be in [1, ", most, "]"));
      }
      expected = ref.size();
    } else if (ref.size() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", task.task_id(), " ChunkRef.size = ", ref.size(),
          "; must be 8 * d = ", expected));
    }
    const std::int64_t chunk = chunk_bytes();
    std::string bytes;
    bytes.reserve(static_cast<std::size_t>(expected));
    for (std::int64_t offset = 0; offset < expected; offset += chunk) {
      grpc::ClientContext ctx;
      SetDeadline(ctx, options_.rpc_timeout);
      v1::FetchChunkRequest request;
      request.set_worker_id(static_cast<std::uint64_t>(worker.value));
      request.set_task_id(task.task_id());
      request.set_field(field);
      request.set_offset(offset);
      request.set_length(ChunkLength(expected, chunk, offset));
      v1::FetchChunkResponse response;
      grpc::Status s = stub()->FetchChunk(&ctx, request, &response);
      if (!s.ok()) return FromGrpc(s);
      if (response.offset() != offset) {
        return absl::InvalidArgumentError(absl::StrCat(
            "FetchChunkResponse.offset = ", response.offset(), "; must be ", offset,
            " (the offset asked for)"));
      }
      FEDSIM_RETURN_IF_ERROR(CheckChunk("FetchChunkResponse", expected, chunk, offset,
                                        response.data(), response.sha256()));
      bytes.append(response.data());
    }
    FEDSIM_RETURN_IF_ERROR(CheckAssembled(
        absl::StrCat("task ", task.task_id(), " ChunkRef"), bytes, ref.size(),
        ref.sha256()));
    *out = std::move(bytes);
    return absl::OkStatus();
  }

  // Uploads `*bytes` in chunks, then replaces it by a ChunkRef in `ref`.
  absl::Status Upload(WorkerId worker, std::uint64_t task, v1::ChunkField field,
                      std::string* bytes, v1::ChunkRef* ref) {
    const auto total = static_cast<std::int64_t>(bytes->size());
    const std::int64_t chunk = chunk_bytes();
    for (std::int64_t offset = 0; offset < total; offset += chunk) {
      grpc::ClientContext ctx;
      SetDeadline(ctx, options_.rpc_timeout);
      v1::UploadChunkRequest request;
      request.set_worker_id(static_cast<std::uint64_t>(worker.value));
      request.set_task_id(task);
      request.set_field(field);
      request.set_total_size(total);
      request.set_offset(offset);
      request.set_data(bytes->substr(static_cast<std::size_t>(offset),
                                     static_cast<std::size_t>(ChunkLength(total, chunk, offset))));
      request.set_sha256(Sha256Digest(request.data()));
      v1::UploadChunkResponse response;
      grpc::Status s = stub()->UploadChunk(&ctx, request, &response);
      if (!s.ok()) return FromGrpc(s);
    }
    ref->set_size(total);
    ref->set_sha256(Sha256Digest(*bytes));
    bytes->clear();
    return absl::OkStatus();
  }

  void SetDeadline(grpc::ClientContext& ctx, absl::Duration d) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + d));
    // Wait for the coordinator to come up instead of failing at once.
    ctx.set_wait_for_ready(true);
    std::lock_guard<std::mutex> lock(mu_);
    if (!session_.empty()) ctx.AddMetadata("fedsim-session", session_);
  }


  // Registers a call for CancelCalls while it is in flight.
  class Tracked {
   public:
    Tracked(GrpcCoordinatorClient* c, grpc::ClientContext* ctx) : c_(c), ctx_(ctx) {
      std::lock_guard<std::mutex> lock(c_->calls_mu_);
      cancelled_ = c_->cancelled_;
      if (!cancelled_) c_->calls_.insert(ctx_);
    }
    ~Tracked() {
      std::lock_guard<std::mutex> lock(c_->calls_mu_);
      c_->calls_.erase(ctx_);
    }
    bool cancelled() const { return cancelled_; }

   private:
    GrpcCoordinatorClient* const c_;
    grpc::ClientContext* const ctx_;
    bool cancelled_ = false;
  };

  std::mutex calls_mu_;
  std::set<grpc::ClientContext*> calls_;
  bool cancelled_ = false;
  GrpcClientOptions options_;
  mutable std::mutex mu_;
  std::string session_;  // from the last join; empty without authentication
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<v1::Coordinator::Stub> stub_;
  std::int64_t max_message_bytes_ = 0;
  // distributed.chunk_bytes of the run, learnt at Join.
  std::int64_t chunk_bytes_ = std::int64_t{1} << 20;
};

}  // namespace

std::unique_ptr<CoordinatorClient> MakeGrpcCoordinatorClient(
    const GrpcClientOptions& options) {
  return std::make_unique<GrpcCoordinatorClient>(options);
}

}  // namespace fedsim
