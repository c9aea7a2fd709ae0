#include "server/grpc/coordinator_server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/build_info.h"
#include "common/base/keepalive.h"
#include "common/codec/task_codec.h"
#include "algorithms/registry.h"
#include "common/config/experiment.h"
#include "fedsim/v1/service.grpc.pb.h"
#include "server/grpc/auth.h"
#include "grpcpp/resource_quota.h"
#include "server/grpc/chunk_store.h"
#include "server/coordinator/rpc_stats.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/grpcpp.h"

namespace fedsim {
namespace {

// Whether `listen` (HOST:PORT, HOST may be [v6]) names a TCP port that
// another process holds: a bind of our own, without SO_REUSEPORT, fails
// with EADDRINUSE. Asked before gRPC binds so that the user sees one line
// from fedsim instead of gRPC's multi-line log; port 0 and addresses this
// cannot parse are left to gRPC (which also refuses a port in use, since
// SO_REUSEPORT is off).
bool PortInUse(const std::string& listen) {
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 >= listen.size()) return false;
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (port == "0") return false;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found) != 0) {
    return false;
  }
  bool in_use = false;
  for (addrinfo* a = found; a != nullptr && !in_use; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EADDRINUSE) in_use = true;
    close(fd);
  }
  freeaddrinfo(found);
  return in_use;
}

grpc::Status ToGrpc(const absl::Status& s) {
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

// A parked PullTask. gRPC owns it until OnDone.
class PullReactor : public grpc::ServerUnaryReactor {
 public:
  explicit PullReactor(Coordinator* coordinator) : coordinator_(coordinator) {}
  void set_pull_id(std::int64_t id) { pull_id_.store(id); }
  void OnCancel() override {
    const std::int64_t id = pull_id_.load();
    if (id != 0) coordinator_->CancelPull(id);
  }
  void OnDone() override { delete this; }

 private:
  Coordinator* const coordinator_;
  std::atomic<std::int64_t> pull_id_{0};
};

}  // namespace

class CoordinatorServer::Impl final : public v1::Coordinator::CallbackService {
 public:
  Impl(const Options& options, Coordinator* coordinator,
       const v1::ExperimentConfig& config, std::int64_t dim)
      : options_(options), coordinator_(coordinator), config_(config), dim_(dim),
        auth_(options.auth, options.log),
        chunks_(ChunkLimits(config, dim), coordinator, dim) {}

  static ChunkStore::Limits ChunkLimits(const v1::ExperimentConfig& config,
                                        std::int64_t dim) {
    ChunkStore::Limits limits;
    // A serialised ClientStateBlob holding every vector of the layout, with
    // room for the protobuf framing.
    for (const auto& [name, size] : ClientStateLayoutOf(config, dim)) {
      limits.max_client_state_bytes +=
          static_cast<std::int64_t>(size) * 8 + static_cast<std::int64_t>(name.size()) + 32;
    }
    const auto& d = config.distributed();
    if (d.has_chunk_bytes()) limits.chunk_bytes = d.chunk_bytes();
    if (d.has_max_inflight_per_worker()) {
      limits.max_inflight_per_worker = d.max_inflight_per_worker();
    }
    if (d.has_max_upload_buffer_bytes()) {
      limits.max_buffer_bytes = d.max_upload_buffer_bytes();
    }
    return limits;
  }

  // Records the call in options_.stats (if set), then finishes it. The
  // sizes are the messages' serialized sizes (a failed call sends no
  // response); the latency runs from the handler's start, so a PullTask's
  // includes its long-poll wait.
  void Finish(grpc::ServerUnaryReactor* reactor, RpcMethod method,
              RpcStats::Clock::time_point start,
              const google::protobuf::MessageLite& request,
              const google::protobuf::MessageLite* response, const grpc::Status& status) {
    if (options_.stats != nullptr) {
      options_.stats->Record(
          method, static_cast<int>(status.error_code()),
          static_cast<std::int64_t>(request.ByteSizeLong()),
          status.ok() ? static_cast<std::int64_t>(response->ByteSizeLong()) : 0,
          RpcStats::Clock::now() - start);
    }
    reactor->Finish(status);
  }

  // Counts a call of `worker` in flight while it lives (per-worker cap).
  class CallGuard {
   public:
    CallGuard(ChunkStore* chunks, WorkerId worker, const char* rpc)
        : chunks_(chunks), worker_(worker), status_(chunks->AcquireCall(worker, rpc)) {}
    ~CallGuard() {
      if (status_.ok()) chunks_->ReleaseCall(worker_);
    }
    const absl::Status& status() const { return status_; }

   private:
    ChunkStore* const chunks_;
    const WorkerId worker_;
    const absl::Status status_;
  };

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx,
                                 const v1::JoinRequest* request,
                                 v1::JoinResponse* response) override {
    const auto start = RpcStats::Clock::now();
    auto* reactor = ctx->DefaultReactor();
    auto finish = [&](const grpc::Status& status) {
      Finish(reactor, RpcMethod::kJoin, start, *request, response, status);
    };
    absl::StatusOr<std::string> name = auth_.enabled()
        ? auth_.AuthenticateJoin(*ctx, *request, absl::Now())
        : absl::StatusOr<std::string>(request->worker_name());
    if (!name.ok()) {
      finish(ToGrpc(name.status()));
      return reactor;
    }
    if (absl::Status same = CheckSameBuildIsa(
            absl::StrCat("worker '", request->worker_name(), "'"), request->build_isa());
        !same.ok()) {
      finish(ToGrpc(same));
      return reactor;
    }
    absl::StatusOr<WorkerId> id = coordinator_->Join(*name, request->worker_name());
    if (!id.ok()) {
      finish(ToGrpc(id.status()));
      return reactor;
    }
    if (auth_.enabled()) {
      response->set_session(auth_.OpenSession(id->value, *name));
      // Sessions of workers the coordinator no longer knows (declared dead,
      // replaced by a rejoin) go with every join.
      auth_.RetainSessions(
          [this](std::int64_t worker) { return coordinator_->IsRegistered(WorkerId(worker)); });
    }
    response->set_worker_id(static_cast<std::uint64_t>(id->value));
    response->set_slowdown(coordinator_->WorkerSlowdown(*id));
    response->set_run_id(options_.run_id);
    *response->mutable_config() = config_;
    finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* PullTask(grpc::CallbackServerContext* ctx,
                                     const v1::PullTaskRequest* request,
                                     v1::PullTaskResponse* response) override {
    const auto start = RpcStats::Clock::now();
    if (absl::Status s = auth_.CheckCall(
            *ctx, "PullTask", static_cast<std::int64_t>(request->worker_id()));
        !s.ok()) {
      auto* reactor = ctx->DefaultReactor();
      Finish(reactor, RpcMethod::kPullTask, start, *request, response, ToGrpc(s));
      return reactor;
    }
    auto* reactor = new PullReactor(coordinator_);
    const absl::Time deadline = absl::FromChrono(ctx->deadline());
    const std::int64_t id = coordinator_->PullTask(
        WorkerId(static_cast<std::int64_t>(request->worker_id())), deadline,
        [this, reactor, request, response, start](absl::StatusOr<PullReply> reply) {
          if (!reply.ok()) {
            Finish(reactor, RpcMethod::kPullTask, start, *request, response,
                   ToGrpc(reply.status()));
            return;
          }
          response->set_run_finished(reply->run_finished);
          response->set_retry_after_ms(reply->retry_after_ms);
          if (reply->task.has_value()) {
            EncodeTask(*reply->task, *response->mutable_task());
            chunks_.OffloadTask(*reply->task, *response->mutable_task());
          }
          Finish(reactor, RpcMethod::kPullTask, start, *request, response,
                 grpc::Status::OK);
        });
    reactor->set_pull_id(id);
    return reactor;
  }

  grpc::ServerUnaryReactor* PushResult(grpc::CallbackServerContext* ctx,
                                       const v1::PushResultRequest* request,
                                       v1::PushResultResponse* response) override {
    const auto start = RpcStats::Clock::now();
    auto* reactor = ctx->DefaultReactor();
    auto finish = [&](const grpc::Status& status) {
      Finish(reactor, RpcMethod::kPushResult, start, *request, response, status);
    };
    const WorkerId worker(static_cast<std::int64_t>(request->worker_id()));
    if (absl::Status s = auth_.CheckCall(*ctx, "PushResult", worker.value); !s.ok()) {
      finish(ToGrpc(s));
      return reactor;
    }
    CallGuard guard(&chunks_, worker, "PushResult");
    if (!guard.status().ok()) {
      finish(ToGrpc(guard.status()));
      return reactor;
    }
    // Large fields were uploaded in chunks: assemble and check them first.
    const v1::Result* message = &request->result();
    v1::Result resolved;
    absl::Status assembled;
    if (message->has_update_ref() || message->has_control_delta_ref() ||
        message->has_client_state_ref()) {
      resolved = *message;
      assembled = chunks_.ResolveResult(worker, resolved);
      message = &resolved;
    }
    if (!assembled.ok()) {
      // A missing, incomplete or corrupt upload is a transport fault, not a
      // bad result: the task stays open and the worker may upload it again
      // (malformed results end their task, below).
      coordinator_->RecordChunkRejected(
          worker, static_cast<std::int64_t>(request->result().task_id()), "PushResult",
          assembled);
      finish(ToGrpc(assembled));
      return reactor;
    }
    absl::StatusOr<ClientResult> result = DecodeResult(*message, dim_);
    if (!result.ok()) {
      coordinator_->RecordRejectedPush(
          worker, static_cast<std::int64_t>(request->result().task_id()),
          request->result().client_id(), result.status());
      finish(ToGrpc(result.status()));
      return reactor;
    }
    absl::StatusOr<bool> duplicate =
        coordinator_->PushResult(worker, *std::move(result));
    if (!duplicate.ok()) {
      finish(ToGrpc(duplicate.status()));
      return reactor;
    }
    response->set_duplicate(*duplicate);
    finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx,
                                  const v1::LeaveRequest* request,
                                  v1::LeaveResponse* response) override {
    const auto start = RpcStats::Clock::now();
    auto* reactor = ctx->DefaultReactor();
    auto finish = [&](const grpc::Status& status) {
      Finish(reactor, RpcMethod::kLeave, start, *request, response, status);
    };
    const std::int64_t worker = static_cast<std::int64_t>(request->worker_id());
    absl::Status s = auth_.CheckCall(*ctx, "Leave", worker);
    if (s.ok()) {
      s = coordinator_->Leave(WorkerId(worker));
      if (s.ok()) {
        auth_.CloseSession(worker);
        chunks_.DropWorker(WorkerId(worker));
      }
    }
    finish(ToGrpc(s));
    return reactor;
  }

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override {
    const auto start = RpcStats::Clock::now();
    auto* reactor = ctx->DefaultReactor();
    auto finish = [&](const grpc::Status& status) {
      Finish(reactor, RpcMethod::kHeartbeat, start, *request, response, status);
    };
    const std::int64_t worker = static_cast<std::int64_t>(request->worker_id());
    absl::Status s = auth_.CheckCall(*ctx, "Heartbeat", worker);
    if (s.ok()) s = coordinator_->Heartbeat(WorkerId(worker));
    finish(ToGrpc(s));
    return reactor;
  }

  grpc::ServerUnaryReactor* FetchChunk(grpc::CallbackServerContext* ctx,
                                       const v1::FetchChunkRequest* request,
                                       v1::FetchChunkResponse* response) override {
    const auto start = RpcStats::Clock::now();
    auto* reactor = ctx->DefaultReactor();
    auto finish = [&](const grpc::Status& status) {
      Finish(reactor, RpcMethod::kFetchChunk, start, *request, response, status);
    };
    absl::Status status = auth_.CheckCall(
        *ctx, "FetchChunk", static_cast<std::int64_t>(request->worker_id()));
    if (status.ok()) status = chunks_.Fetch(*request, response);
    if (absl::IsInvalidArgument(status)) {
      coordinator_->RecordChunkRejected(
          WorkerId(static_cast<std::int64_t>(request->worker_id())),
          static_cast<std::int64_t>(request->task_id()), "FetchChunk", status);
    }
    finish(ToGrpc(status));
    return reactor;
  }

  grpc::ServerUnaryReactor* UploadChunk(grpc::CallbackServerContext* ctx,
                                        const v1::UploadChunkRequest* request,
                                        v1::UploadChunkResponse* response) override {
    const auto start = RpcStats::Clock::now();
    auto* reactor = ctx->DefaultReactor();
    auto finish = [&](const grpc::Status& status) {
      Finish(reactor, RpcMethod::kUploadChunk, start, *request, response, status);
    };
    const WorkerId worker(static_cast<std::int64_t>(request->worker_id()));
    absl::Status status = auth_.CheckCall(*ctx, "UploadChunk", worker.value);
    if (!status.ok()) {
      finish(ToGrpc(status));
      return reactor;
    }
    CallGuard guard(&chunks_, worker, "UploadChunk");
    status = guard.status().ok() ? chunks_.Upload(*request, response) : guard.status();
    if (absl::IsInvalidArgument(status) || absl::IsResourceExhausted(status)) {
      coordinator_->RecordChunkRejected(
          worker, static_cast<std::int64_t>(request->task_id()), "UploadChunk", status);
    }
    finish(ToGrpc(status));
    return reactor;
  }

  Options options_;
  Coordinator* const coordinator_;
  const v1::ExperimentConfig config_;
  const std::int64_t dim_;
  ServerAuth auth_;
  ChunkStore chunks_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool stopped_ = false;
};

CoordinatorServer::CoordinatorServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::Seconds(1)); }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const Options& options, Coordinator* coordinator,
    const v1::ExperimentConfig& config) {
  auto impl = std::make_unique<Impl>(options, coordinator, config,
                                     coordinator->num_parameters());
  if (!options.listen.empty() && PortInUse(options.listen)) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on '", options.listen,
        "': the port is in use (another coordinator?); choose another with --listen"));
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // An empty address serves only InProcessChannel() (tests, fuzzers).
  if (!options.listen.empty()) {
    builder.AddListeningPort(options.listen, impl->auth_.Credentials(), &impl->port_);
  }
  // The same limits as the workers' (client/grpc): a larger message fails
  // with RESOURCE_EXHAUSTED naming its size and the limit.
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // Caps (docs/reliability.md, "Messages, chunks and caps").
  const auto& dist = config.distributed();
  if (dist.has_max_concurrent_streams()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                               dist.max_concurrent_streams());
  }
  if (dist.has_resource_quota_bytes()) {
    grpc::ResourceQuota quota("fedsim-coordinator");
    quota.Resize(static_cast<std::size_t>(dist.resource_quota_bytes()));
    builder.SetResourceQuota(quota);
  }
  // Workers send keepalive pings every kClientKeepaliveTimeMs, with or
  // without a call in flight (client/grpc): accept them rather than answer
  // GOAWAY "too_many_pings" (gRPC's default minimum interval is 5 minutes).
  // common/base/keepalive.h asserts that the client pings no more often.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kServerMinPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // gRPC sets SO_REUSEPORT by default on Linux: a second coordinator on a
  // port in use would bind too, and the kernel would split the workers'
  // connections between the two runs without a word. One coordinator per
  // address: the second one fails to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(impl.get());
  impl->server_ = builder.BuildAndStart();
  if (impl->server_ == nullptr || (!options.listen.empty() && impl->port_ == 0)) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on '", options.listen,
        "': the port is in use or the address is not this host's"));
  }
  impl->server_->GetHealthCheckService()->SetServingStatus(true);
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(impl)));
}

int CoordinatorServer::port() const { return impl_->port_; }

std::size_t CoordinatorServer::num_sessions() const { return impl_->auth_.num_sessions(); }

void CoordinatorServer::SetNotServing() {
  if (impl_ == nullptr || impl_->server_ == nullptr) return;
  impl_->server_->GetHealthCheckService()->SetServingStatus(false);
}

std::shared_ptr<grpc::Channel> CoordinatorServer::InProcessChannel(
    std::int64_t max_message_bytes) const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
  return impl_->server_->InProcessChannel(args);
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (impl_ == nullptr || impl_->stopped_ || impl_->server_ == nullptr) return;
  impl_->stopped_ = true;
  impl_->server_->GetHealthCheckService()->SetServingStatus(false);
  // Parked polls must finish before the server can stop.
  impl_->coordinator_->Shutdown();
  impl_->server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  impl_->server_->Wait();
}

}  // namespace fedsim
