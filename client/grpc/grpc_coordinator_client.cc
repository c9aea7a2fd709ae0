#include "client/grpc/grpc_coordinator_client.h"

#include <algorithm>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/grpc/credentials.h"
#include "common/base/keepalive.h"
#include "common/codec/task_codec.h"
#include "fedsim/v1/service.grpc.pb.h"
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
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
    args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
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
    ApplyChannelAuthArgs(options.auth, args);
    channel_ = grpc::CreateCustomChannel(
        options.target, MakeChannelCredentials(options.auth), args);
    stub_ = v1::Coordinator::NewStub(channel_);
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
    SignJoinRequest(options_.auth, absl::Now(), request);
    v1::JoinResponse response;
    grpc::Status s = stub_->Join(&ctx, request, &response);
    if (!s.ok()) return ExplainJoinFailure(options_.auth, options_.target, FromGrpc(s));
    {
      std::lock_guard<std::mutex> lock(mu_);
      session_ = response.session();
    }
    JoinReply reply;
    reply.worker = WorkerId(static_cast<std::int64_t>(response.worker_id()));
    reply.run_id = response.run_id();
    reply.config = response.config();
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
    grpc::Status s = stub_->PullTask(&ctx, request, &response);
    if (!s.ok()) return FromGrpc(s);
    PullResult out;
    out.run_finished = response.run_finished();
    out.retry_after_ms = response.retry_after_ms();
    if (response.has_task()) {
      absl::StatusOr<Task> task = DecodeTask(response.task(), dim);
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
    EncodeResult(result, *request.mutable_result());
    v1::PushResultResponse response;
    grpc::Status s = stub_->PushResult(&ctx, request, &response);
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
    return FromGrpc(stub_->Leave(&ctx, request, &response));
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
    return FromGrpc(stub_->Heartbeat(&ctx, request, &response));
  }

  void CancelCalls() override {
    std::lock_guard<std::mutex> lock(calls_mu_);
    cancelled_ = true;
    for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
  }

 private:
  void SetDeadline(grpc::ClientContext& ctx, absl::Duration d) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + d));
    // Wait for the coordinator to come up instead of failing at once.
    ctx.set_wait_for_ready(true);
    std::lock_guard<std::mutex> lock(mu_);
    if (!session_.empty()) ctx.AddMetadata("fedsim-session", session_);
  }

  std::mutex mu_;
  std::string session_;  // from the last join; empty without authentication

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
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

}  // namespace

std::unique_ptr<CoordinatorClient> MakeGrpcCoordinatorClient(
    const GrpcClientOptions& options) {
  return std::make_unique<GrpcCoordinatorClient>(options);
}

}  // namespace fedsim
