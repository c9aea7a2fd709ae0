#include "tests/fuzz/fuzz_targets.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/build_info.h"
#include "common/config/config.h"
#include "fedsim/v1/service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/run_builder.h"
#include "server/grpc/coordinator_server.h"

namespace fedsim::fuzz {
namespace {

// A violated invariant is a finding: abort so that libFuzzer (or the
// replay test) reports the input.
#define FUZZ_CHECK(cond, what)                                              \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "fuzz invariant violated: %s (%s:%d)\n",         \
                   std::string(what).c_str(), __FILE__, __LINE__);          \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

// Softmax on 60 features and 10 classes: d = 610, 4880 bytes, more than
// chunk_bytes = 1024, so tasks carry ChunkRefs. One client: one task per
// round. The round thread runs; the harness's worker holds the open task.
constexpr char kRun[] = R"(
seed: 1
rounds: 1000000
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 1, partition: natural}
model: {objective: softmax}
participation: {client_fraction: 1}
algorithm: {name: fedavg}
local: {epochs: 1, batch_size: 10, lr: 0.05}
eval: {every: 1000000}
checkpoint: {every: 0}
distributed: {round_deadline_s: 1000000, long_poll_s: 0.05, chunk_bytes: 1024,
              max_message_bytes: 1048576, max_workers: 64}
)";
constexpr std::int64_t kDim = 610;

class Env {
 public:
  static Env& Get() {
    static Env* env = new Env();  // never destroyed: threads keep running
    return *env;
  }

  v1::Coordinator::Stub& stub() { return *stub_; }
  const v1::ExperimentConfig& config() const { return config_; }

  // The harness worker and its open task; a request with worker_id 0 or
  // task_id 0 is given these, so the fuzzer reaches the deep paths.
  std::uint64_t worker() {
    std::lock_guard<std::mutex> lock(mu_);
    return worker_;
  }
  std::uint64_t task() {
    std::lock_guard<std::mutex> lock(mu_);
    return task_;
  }

  // After the harness worker left (a fuzzed Leave), join again and take a
  // task again.
  void Rejoin() {
    std::lock_guard<std::mutex> lock(mu_);
    JoinAndPullLocked();
  }

 private:
  Env() {
    absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(kRun);
    FUZZ_CHECK(config.ok(), config.status().ToString());
    config_ = *config;
    const std::string dir = (std::filesystem::temp_directory_path() /
                             absl::StrCat("fedsim-fuzz-", ::getpid()))
                                .string();
    absl::StatusOr<CoordinatorRun> run = PrepareRun(config_, dir, "distributed");
    FUZZ_CHECK(run.ok(), run.status().ToString());
    run_ = std::make_unique<CoordinatorRun>(*std::move(run));
    CoordinatorOptions options;
    options.max_workers = config_.distributed().max_workers();
    options.round_deadline = absl::Seconds(config_.distributed().round_deadline_s());
    options.long_poll = absl::Seconds(config_.distributed().long_poll_s());
    coordinator_ = std::make_unique<Coordinator>(options, run_.get());
    CoordinatorServer::Options server_options;
    server_options.listen = "";
    server_options.max_message_bytes = config_.distributed().max_message_bytes();
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
        CoordinatorServer::Start(server_options, coordinator_.get(), config_);
    FUZZ_CHECK(server.ok(), server.status().ToString());
    server_ = *std::move(server);
    stub_ = v1::Coordinator::NewStub(
        server_->InProcessChannel(config_.distributed().max_message_bytes()));
    round_thread_ = std::thread([this] { (void)coordinator_->Run(); });
    round_thread_.detach();
    std::lock_guard<std::mutex> lock(mu_);
    JoinAndPullLocked();
  }

  void JoinAndPullLocked() {
    grpc::ClientContext ctx;
    v1::JoinRequest join;
    join.set_worker_name("fuzz-harness");
    join.set_build_isa(std::string(BuildIsa()));
    v1::JoinResponse joined;
    grpc::Status s = stub_->Join(&ctx, join, &joined);
    FUZZ_CHECK(s.ok(), s.error_message());
    worker_ = joined.worker_id();
    task_ = 0;
    for (int i = 0; i < 100 && task_ == 0; ++i) {
      grpc::ClientContext pull_ctx;
      pull_ctx.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::seconds(2));
      v1::PullTaskRequest pull;
      pull.set_worker_id(worker_);
      v1::PullTaskResponse pulled;
      if (stub_->PullTask(&pull_ctx, pull, &pulled).ok() && pulled.has_task()) {
        task_ = pulled.task().task_id();
        FUZZ_CHECK(pulled.task().has_parameters_ref(), "task without ChunkRef");
      }
    }
    FUZZ_CHECK(task_ != 0, "the harness worker got no task");
  }

  v1::ExperimentConfig config_;
  std::unique_ptr<CoordinatorRun> run_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::thread round_thread_;
  std::mutex mu_;
  std::uint64_t worker_ = 0;
  std::uint64_t task_ = 0;
};

template <typename Request>
bool Parse(const std::uint8_t* data, std::size_t size, Request& request) {
  return request.ParseFromArray(data, static_cast<int>(size));
}

void Deadline(grpc::ClientContext& ctx, int ms) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

std::uint64_t WorkerOr(std::uint64_t id) { return id == 0 ? Env::Get().worker() : id; }
std::uint64_t TaskOr(std::uint64_t id) { return id == 0 ? Env::Get().task() : id; }

}  // namespace

int Config(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  if (config.ok()) {
    // A loaded config is valid, and loading is a fixed point.
    FUZZ_CHECK(ValidateConfig(*config).ok(), "loaded config fails validation");
    FUZZ_CHECK(config->distributed().chunk_bytes() * 2 <=
                   config->distributed().max_message_bytes(),
               "chunk_bytes over half of max_message_bytes accepted");
  } else {
    // Config errors are one line.
    const std::string m(config.status().message());
    FUZZ_CHECK(!m.empty() && m.find('\n') == std::string::npos, m);
  }
  return 0;
}

int Join(const std::uint8_t* data, std::size_t size) {
  v1::JoinRequest request;
  if (!Parse(data, size, request)) return 0;
  Env& env = Env::Get();
  grpc::ClientContext ctx;
  Deadline(ctx, 2000);
  v1::JoinResponse response;
  grpc::Status s = env.stub().Join(&ctx, request, &response);
  // A worker of another build level is refused (build_info.h).
  FUZZ_CHECK(s.ok() || s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                 (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
                  request.build_isa() != BuildIsa()),
             s.error_message());
  if (s.ok()) {
    FUZZ_CHECK(response.worker_id() > 0, "worker id 0");
    FUZZ_CHECK(response.config().seed() == env.config().seed(), "config differs");
    // Leave again, so that the registry stays small.
    grpc::ClientContext leave_ctx;
    v1::LeaveRequest leave;
    leave.set_worker_id(response.worker_id());
    v1::LeaveResponse left;
    grpc::Status l = env.stub().Leave(&leave_ctx, leave, &left);
    FUZZ_CHECK(l.ok(), l.error_message());
  }
  return 0;
}

int PullTask(const std::uint8_t* data, std::size_t size) {
  v1::PullTaskRequest request;
  if (!Parse(data, size, request)) return 0;
  Env& env = Env::Get();
  const bool harness = request.worker_id() == 0 || request.worker_id() == env.worker();
  request.set_worker_id(WorkerOr(request.worker_id()));
  grpc::ClientContext ctx;
  Deadline(ctx, 100);
  v1::PullTaskResponse response;
  grpc::Status s = env.stub().PullTask(&ctx, request, &response);
  if (!harness) {
    FUZZ_CHECK(s.error_code() == grpc::StatusCode::NOT_FOUND,
               absl::StrCat("PullTask of unknown worker: ", s.error_code()));
  }
  if (s.ok() && response.has_task()) {
    FUZZ_CHECK(response.task().parameters().empty() &&
                   response.task().parameters_ref().size() == 8 * kDim,
               "task over chunk_bytes not sent as a ChunkRef");
  }
  return 0;
}

int PushResult(const std::uint8_t* data, std::size_t size) {
  v1::PushResultRequest request;
  if (!Parse(data, size, request)) return 0;
  Env& env = Env::Get();
  request.set_worker_id(WorkerOr(request.worker_id()));
  request.mutable_result()->set_task_id(TaskOr(request.result().task_id()));
  const v1::Result& r = request.result();
  // A result that is certainly malformed: wrong update size, no ref (the
  // size is checked before anything else, also before duplicates).
  const bool malformed =
      !r.has_update_ref() && r.update().size() != static_cast<std::size_t>(8 * kDim);
  grpc::ClientContext ctx;
  Deadline(ctx, 2000);
  v1::PushResultResponse response;
  grpc::Status s = env.stub().PushResult(&ctx, request, &response);
  if (malformed) {
    FUZZ_CHECK(!s.ok(), "malformed PushResult accepted");
  }
  return 0;
}

int Leave(const std::uint8_t* data, std::size_t size) {
  v1::LeaveRequest request;
  if (!Parse(data, size, request)) return 0;
  Env& env = Env::Get();
  const bool harness = request.worker_id() == 0 || request.worker_id() == env.worker();
  request.set_worker_id(WorkerOr(request.worker_id()));
  grpc::ClientContext ctx;
  Deadline(ctx, 2000);
  v1::LeaveResponse response;
  grpc::Status s = env.stub().Leave(&ctx, request, &response);
  if (harness) {
    FUZZ_CHECK(s.ok(), s.error_message());
    env.Rejoin();
  } else {
    FUZZ_CHECK(s.error_code() == grpc::StatusCode::NOT_FOUND,
               absl::StrCat("Leave of unknown worker: ", s.error_code()));
  }
  return 0;
}

int FetchChunk(const std::uint8_t* data, std::size_t size) {
  v1::FetchChunkRequest request;
  if (!Parse(data, size, request)) return 0;
  Env& env = Env::Get();
  request.set_worker_id(WorkerOr(request.worker_id()));
  request.set_task_id(TaskOr(request.task_id()));
  grpc::ClientContext ctx;
  Deadline(ctx, 2000);
  v1::FetchChunkResponse response;
  grpc::Status s = env.stub().FetchChunk(&ctx, request, &response);
  const std::int64_t total = 8 * kDim, chunk = env.config().distributed().chunk_bytes();
  const bool bad_range = request.offset() < 0 || request.offset() >= total ||
                         request.offset() % chunk != 0 || request.length() <= 0 ||
                         request.length() != std::min(chunk, total - request.offset());
  if (bad_range || request.field() != v1::CHUNK_FIELD_PARAMETERS) {
    FUZZ_CHECK(!s.ok(), "FetchChunk out of range accepted");
  }
  if (s.ok()) {
    FUZZ_CHECK(static_cast<std::int64_t>(response.data().size()) == request.length(),
               "FetchChunk returned a wrong length");
  }
  return 0;
}

int UploadChunk(const std::uint8_t* data, std::size_t size) {
  v1::UploadChunkRequest request;
  if (!Parse(data, size, request)) return 0;
  Env& env = Env::Get();
  request.set_worker_id(WorkerOr(request.worker_id()));
  request.set_task_id(TaskOr(request.task_id()));
  grpc::ClientContext ctx;
  Deadline(ctx, 2000);
  v1::UploadChunkResponse response;
  grpc::Status s = env.stub().UploadChunk(&ctx, request, &response);
  const std::int64_t total = 8 * kDim, chunk = env.config().distributed().chunk_bytes();
  const bool bad = request.total_size() != total || request.offset() < 0 ||
                   request.offset() >= total || request.offset() % chunk != 0 ||
                   static_cast<std::int64_t>(request.data().size()) !=
                       std::min(chunk, total - request.offset()) ||
                   request.sha256().size() != 32;
  if (bad) FUZZ_CHECK(!s.ok(), "malformed UploadChunk accepted");
  if (s.ok()) {
    FUZZ_CHECK(response.received() > request.offset() &&
                   response.received() <= total,
               "UploadChunk reported a wrong byte count");
  }
  return 0;
}

}  // namespace fedsim::fuzz
