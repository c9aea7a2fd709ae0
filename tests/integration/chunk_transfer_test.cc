// Chunked transfer, message limits and caps of the coordinator's gRPC
// service (docs/reliability.md, "Messages, chunks and caps"):
//   * an MLP larger than distributed.chunk_bytes trains over gRPC with 2
//     worker processes bit-identically to the embedded run;
//   * FetchChunk / UploadChunk / PushResult reject a truncated chunk, a bad
//     checksum, an out-of-range offset and a wrong whole with
//     INVALID_ARGUMENT and a chunk_rejected / result_rejected event;
//   * a message over max_message_bytes is RESOURCE_EXHAUSTED naming actual
//     vs limit; Join past max_workers and uploads past the caps are
//     RESOURCE_EXHAUSTED; partial uploads are freed.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/base/build_info.h"
#include "common/codec/flat_bytes.h"
#include "common/config/config.h"
#include "fedsim/v1/service.grpc.pb.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/run_builder.h"
#include "server/grpc/chunk_store.h"
#include "server/grpc/coordinator_server.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace chunk_transfer_test {
namespace {

using test::ReadFile;

// 60 features, 10 classes, 16 hidden units: d = 60*16 + 16 + 16*10 + 10 =
// 1146 parameters, 9168 bytes: three chunks of 4096 bytes.
constexpr char kMlp[] = R"(
seed: 5
rounds: 3
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 6, partition: natural}
model: {objective: mlp, hidden_units: 16}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg, server_lr: 1}
local: {epochs: 1, batch_size: 10, lr: 0.05}
)";
constexpr std::int64_t kDim = 1146;

v1::ExperimentConfig Config(const std::string& extra) {
  absl::StatusOr<v1::ExperimentConfig> config =
      LoadConfigText(absl::StrCat(kMlp, extra));
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// Runs kMlp with `algorithm` embedded and with 2 worker processes; expects
// bit-identical models and no rejection.
void ExpectChunkedRunIdentical(const std::string& algorithm, const std::string& name) {
  const std::string dist_yaml = "distributed: {chunk_bytes: 4096}\n";
  auto Config = [&](const std::string& extra) {
    absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(absl::StrReplaceAll(
        absl::StrCat(kMlp, extra),
        {{"algorithm: {name: fedavg, server_lr: 1}", algorithm}}));
    EXPECT_TRUE(config.ok()) << config.status();
    return *config;
  };
  const std::string embedded_dir = ::testing::TempDir() + "/chunk_embedded_" + name;
  const std::string dist_dir = ::testing::TempDir() + "/chunk_dist_" + name;
  {
    absl::StatusOr<CoordinatorRun> run =
        PrepareRun(Config(dist_yaml), embedded_dir, "embedded");
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_TRUE(RunEmbedded(*run).ok());
  }
  {
    absl::StatusOr<CoordinatorRun> run =
        PrepareRun(Config(dist_yaml), dist_dir, "distributed");
    ASSERT_TRUE(run.ok()) << run.status();
    LaunchOptions options;
    options.workers = 2;
    options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
    absl::StatusOr<RunSummary> summary = LaunchRun(*run, options);
    ASSERT_TRUE(summary.ok()) << summary.status();
  }
  const std::string a = ReadFile(embedded_dir + "/model.bin");
  const std::string b = ReadFile(dist_dir + "/model.bin");
  // The model is larger than chunk_bytes, so every task and update went in
  // chunks (ChunkStore::OffloadTask moves every field over the size).
  ASSERT_GE(a.size(), static_cast<std::size_t>(8 * kDim));
  EXPECT_EQ(a, b);
  EXPECT_EQ(ReadFile(embedded_dir + "/metrics.csv").size() > 0, true);
  // No chunk or result was rejected in the distributed run.
  const std::string events = ReadFile(dist_dir + "/events.jsonl");
  EXPECT_FALSE(absl::StrContains(events, "chunk_rejected"));
  EXPECT_FALSE(absl::StrContains(events, "result_rejected"));
  EXPECT_TRUE(absl::StrContains(events, "result_accepted"));
}

TEST(ChunkTransferTest, MlpAboveChunkBytesIsBitIdenticalOverGrpc) {
  ExpectChunkedRunIdentical("algorithm: {name: fedavg, server_lr: 1}", "fedavg");
}

// SCAFFOLD: the server control variate goes down and every control delta
// comes up in chunks too.
TEST(ChunkTransferTest, ScaffoldMlpAboveChunkBytesIsBitIdenticalOverGrpc) {
  ExpectChunkedRunIdentical("algorithm: {name: scaffold, server_lr: 1}", "scaffold");
}

// A coordinator for the MLP run served in-process, with one fake worker
// that joined and pulled a task (so chunk RPCs have an open task).
class ChunkRpcTest : public ::testing::Test {
 protected:
  void Start(const std::string& distributed) {
    config_ = Config(absl::StrCat("distributed: {", distributed, "}\n"));
    dir_ = ::testing::TempDir() + "/chunk_rpc_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    absl::StatusOr<CoordinatorRun> run = PrepareRun(config_, dir_, "distributed");
    ASSERT_TRUE(run.ok()) << run.status();
    run_ = std::make_unique<CoordinatorRun>(*std::move(run));
    CoordinatorOptions options;
    options.max_workers = config_.distributed().max_workers();
    coordinator_ = std::make_unique<Coordinator>(options, run_.get());
    CoordinatorServer::Options server_options;
    server_options.listen = "";
    server_options.max_message_bytes = config_.distributed().max_message_bytes();
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
        CoordinatorServer::Start(server_options, coordinator_.get(), config_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    // The client side allows 64 MiB, so that the server's limit is the one hit.
    stub_ = v1::Coordinator::NewStub(server_->InProcessChannel(64 << 20));
    round_thread_ = std::thread([this] { (void)coordinator_->Run(); });

    grpc::ClientContext join_ctx;
    v1::JoinRequest join;
    join.set_worker_name("test");
    join.set_build_isa(std::string(BuildIsa()));
    v1::JoinResponse joined;
    ASSERT_TRUE(stub_->Join(&join_ctx, join, &joined).ok());
    worker_ = joined.worker_id();
    v1::PullTaskResponse pulled;
    for (int i = 0; i < 50 && !pulled.has_task(); ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      v1::PullTaskRequest pull;
      pull.set_worker_id(worker_);
      ASSERT_TRUE(stub_->PullTask(&ctx, pull, &pulled).ok());
    }
    ASSERT_TRUE(pulled.has_task());
    task_ = pulled.task();
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
    if (round_thread_.joinable()) round_thread_.join();
  }

  grpc::Status Upload(std::int64_t offset, const std::string& data,
                      const std::string& sha, std::int64_t total = 8 * kDim,
                      v1::ChunkField field = v1::CHUNK_FIELD_UPDATE) {
    grpc::ClientContext ctx;
    v1::UploadChunkRequest r;
    r.set_worker_id(worker_);
    r.set_task_id(task_.task_id());
    r.set_field(field);
    r.set_total_size(total);
    r.set_offset(offset);
    r.set_data(data);
    r.set_sha256(sha);
    v1::UploadChunkResponse response;
    return stub_->UploadChunk(&ctx, r, &response);
  }

  grpc::Status Fetch(std::int64_t offset, std::int64_t length,
                     v1::FetchChunkResponse* response) {
    grpc::ClientContext ctx;
    v1::FetchChunkRequest r;
    r.set_worker_id(worker_);
    r.set_task_id(task_.task_id());
    r.set_field(v1::CHUNK_FIELD_PARAMETERS);
    r.set_offset(offset);
    r.set_length(length);
    return stub_->FetchChunk(&ctx, r, response);
  }

  grpc::Status Push(const v1::Result& result) {
    grpc::ClientContext ctx;
    v1::PushResultRequest r;
    r.set_worker_id(worker_);
    *r.mutable_result() = result;
    v1::PushResultResponse response;
    return stub_->PushResult(&ctx, r, &response);
  }

  // Uploads `bytes` (8 d) in full, correct chunks of 4096.
  void UploadAll(const std::string& bytes) {
    for (std::size_t off = 0; off < bytes.size(); off += 4096) {
      const std::string chunk = bytes.substr(off, 4096);
      grpc::Status s = Upload(static_cast<std::int64_t>(off), chunk, Sha256Digest(chunk));
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
  }

  std::string Events() { return ReadFile(dir_ + "/events.jsonl"); }

  v1::ExperimentConfig config_;
  std::string dir_;
  std::unique_ptr<CoordinatorRun> run_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::thread round_thread_;
  std::uint64_t worker_ = 0;
  v1::Task task_;
};

TEST_F(ChunkRpcTest, LargeTaskComesAsRefAndChunksReassembleIt) {
  Start("chunk_bytes: 4096, round_deadline_s: 60");
  EXPECT_TRUE(task_.parameters().empty());
  ASSERT_TRUE(task_.has_parameters_ref());
  EXPECT_EQ(task_.parameters_ref().size(), 8 * kDim);
  EXPECT_EQ(task_.parameters_ref().model_version(), 0);
  std::string assembled;
  for (std::int64_t off = 0; off < 8 * kDim; off += 4096) {
    v1::FetchChunkResponse r;
    const std::int64_t len = std::min<std::int64_t>(4096, 8 * kDim - off);
    grpc::Status s = Fetch(off, len, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.offset(), off);
    EXPECT_EQ(static_cast<std::int64_t>(r.data().size()), len);
    EXPECT_EQ(r.sha256(), Sha256Digest(r.data()));
    assembled += r.data();
  }
  EXPECT_EQ(Sha256Digest(assembled), task_.parameters_ref().sha256());
  // The last chunk is 9168 - 8192 = 976 bytes; asking for more is refused.
  v1::FetchChunkResponse r;
  grpc::Status s = Fetch(8192, 4096, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "FetchChunk.length = 4096 at offset 8192; must be 976 "
            "(min(chunk_bytes = 4096, size 9168 - offset))");
  s = Fetch(9168, 16, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "FetchChunk.offset = 9168; must be in [0, 9168) and a multiple of "
            "chunk_bytes = 4096");
  EXPECT_TRUE(absl::StrContains(Events(), "\"event\":\"chunk_rejected\""));
}

TEST_F(ChunkRpcTest, TruncatedChunkBadChecksumAndBadOffsetAreInvalidArgument) {
  Start("chunk_bytes: 4096, round_deadline_s: 60");
  const std::string part(100, 'x');
  grpc::Status s = Upload(0, part, Sha256Digest(part));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "UploadChunk.data is 100 bytes at offset 0; must be 4096 "
            "(min(chunk_bytes = 4096, size 9168 - offset)): truncated chunk");
  const std::string full(4096, 'y');
  s = Upload(0, full, Sha256Digest(part));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "UploadChunk.sha256 = "));
  EXPECT_TRUE(absl::StrContains(s.error_message(), ": bad checksum"));
  s = Upload(12288, full, Sha256Digest(full));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "UploadChunk.offset = 12288; must be in [0, 9168) and a multiple of "
            "chunk_bytes = 4096");
  s = Upload(0, full, Sha256Digest(full), 8 * kDim + 8);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "UploadChunk.total_size = 9176; must be 8 * d = 9168 (the field's exact size)");
  // Chunks go in order: the first at 0, then 4096.
  ASSERT_TRUE(Upload(0, full, Sha256Digest(full)).ok());
  s = Upload(8192, std::string(976, 'z'), Sha256Digest(std::string(976, 'z')));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "UploadChunk.offset = 8192; must be at most 4096 (the bytes received "
            "so far; chunks go in order)");
  // Every rejection is in events.jsonl.
  const std::string events = Events();
  EXPECT_TRUE(absl::StrContains(events, "truncated chunk"));
  EXPECT_TRUE(absl::StrContains(events, "bad checksum"));
  EXPECT_TRUE(absl::StrContains(events, "\"rpc\":\"UploadChunk\""));
}

TEST_F(ChunkRpcTest, PushResultChecksTheAssembledUpdate) {
  Start("chunk_bytes: 4096, round_deadline_s: 60");
  FlatVector update = FlatVector::Constant(kDim, 0.25);
  const std::string bytes = EncodeFlat(update);
  v1::Result result;
  result.set_task_id(task_.task_id());
  result.set_client_id(task_.client_id());
  result.set_num_examples(1);
  result.mutable_update_ref()->set_size(8 * kDim);
  result.mutable_update_ref()->set_sha256(Sha256Digest(bytes));
  // No upload yet.
  grpc::Status s = Push(result);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), absl::StrCat("Result.update_ref: worker ", worker_,
                                            " has no upload of task ", task_.task_id(),
                                            " (UploadChunk comes first)"));
  // Incomplete upload.
  UploadAll(bytes.substr(0, 8192));  // two of three chunks
  s = Push(result);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            absl::StrCat("Result.update_ref: the upload of task ", task_.task_id(),
                         " is incomplete: 8192 of 9168 bytes received"));
  // Complete upload, but the whole's SHA-256 does not match the ref.
  UploadAll(bytes);
  v1::Result wrong = result;
  wrong.mutable_update_ref()->set_sha256(Sha256Digest("other"));
  s = Push(wrong);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(
      s.error_message(), "must be the SHA-256 of the assembled 9168 bytes"))
      << s.error_message();
  // Complete and matching: the assembled update reaches validation, which
  // rejects this made-up update for its example count, not for its bytes.
  UploadAll(bytes);
  s = Push(result);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(
      s.error_message(),
      absl::StrCat("round 0, client ", task_.client_id(), ": num_examples = 1; the client has")))
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(Events(), "\"event\":\"result_rejected\""));
}

TEST_F(ChunkRpcTest, MessageOverTheLimitIsResourceExhaustedNamingSizes) {
  Start("chunk_bytes: 4096, max_message_bytes: 1048576");
  grpc::ClientContext ctx;
  v1::JoinRequest join;
  join.set_worker_name(std::string(2 << 20, 'n'));
  v1::JoinResponse joined;
  grpc::Status s = stub_->Join(&ctx, join, &joined);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // gRPC names the actual size (2 MiB + framing) and the limit.
  EXPECT_TRUE(absl::StrContains(s.error_message(), "vs. 1048576")) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "(209715")) << s.error_message();
}

TEST_F(ChunkRpcTest, JoinPastMaxWorkersIsResourceExhausted) {
  Start("chunk_bytes: 4096, max_workers: 2");
  grpc::ClientContext ctx1, ctx2;
  v1::JoinRequest join;
  join.set_worker_name("second");
  join.set_build_isa(std::string(BuildIsa()));
  v1::JoinResponse joined;
  ASSERT_TRUE(stub_->Join(&ctx1, join, &joined).ok());
  join.set_worker_name("third");  // "second" again would be that worker rejoining
  grpc::Status s = stub_->Join(&ctx2, join, &joined);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(),
            "Join: 2 workers are registered; distributed.max_workers = 2");
}

// Issue 20: a worker built for another vector ISA level would change the
// results' last bits; its Join is refused, naming both levels.
TEST_F(ChunkRpcTest, JoinOfAWorkerOfAnotherIsaLevelIsFailedPrecondition) {
  Start("chunk_bytes: 4096");
  for (const char* isa : {"x86-64-v9", ""}) {
    if (std::string(isa).empty() && BuildIsa() == "x86-64") continue;  // the same level
    grpc::ClientContext ctx;
    v1::JoinRequest join;
    join.set_worker_name("old");
    join.set_build_isa(isa);
    v1::JoinResponse joined;
    grpc::Status s = stub_->Join(&ctx, join, &joined);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << isa;
    EXPECT_TRUE(absl::StartsWith(s.error_message(), "worker 'old' comes from a build for "))
        << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), absl::StrCat("this one is for ", BuildIsa())))
        << s.error_message();
  }
}

TEST_F(ChunkRpcTest, UploadCapsBoundHeldBytesAndLeaveFreesThem) {
  Start("chunk_bytes: 4096, round_deadline_s: 60");
  const std::string full(4096, 'y');
  const std::string sha = Sha256Digest(full);
  v1::UploadChunkResponse response;
  auto request = [&](v1::ChunkField field) {
    v1::UploadChunkRequest r;
    r.set_worker_id(worker_);
    r.set_task_id(task_.task_id());
    r.set_field(field);
    r.set_total_size(8 * kDim);
    r.set_offset(0);
    r.set_data(full);
    r.set_sha256(sha);
    return r;
  };
  {
    // One partial upload per worker.
    ChunkStore store({4096, 1, std::int64_t{1} << 30}, coordinator_.get(), kDim);
    ASSERT_TRUE(store.Upload(request(v1::CHUNK_FIELD_UPDATE), &response).ok());
    EXPECT_EQ(response.received(), 4096);
    EXPECT_EQ(store.bytes_held(), 8 * kDim);
    absl::Status s = store.Upload(request(v1::CHUNK_FIELD_CONTROL_DELTA), &response);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(s.message(), absl::StrCat("UploadChunk: worker ", worker_,
                                        " holds 1 partial uploads; "
                                        "distributed.max_inflight_per_worker = 1"));
    store.DropWorker(WorkerId(static_cast<std::int64_t>(worker_)));
    EXPECT_EQ(store.bytes_held(), 0);
    EXPECT_EQ(store.uploads_held(), 0);
  }
  {
    // Held bytes: 1.5 uploads' worth allows one.
    ChunkStore store({4096, 8, 8 * kDim * 3 / 2}, coordinator_.get(), kDim);
    ASSERT_TRUE(store.Upload(request(v1::CHUNK_FIELD_UPDATE), &response).ok());
    absl::Status s = store.Upload(request(v1::CHUNK_FIELD_CONTROL_DELTA), &response);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(s.message(), "UploadChunk: partial uploads hold 9168 bytes; 9168 more "
                           "would exceed distributed.max_upload_buffer_bytes = 13752");
  }
  {
    // Calls in flight per worker.
    ChunkStore store({4096, 2, std::int64_t{1} << 30}, coordinator_.get(), kDim);
    const WorkerId w(7);
    ASSERT_TRUE(store.AcquireCall(w, "PushResult").ok());
    ASSERT_TRUE(store.AcquireCall(w, "PushResult").ok());
    absl::Status s = store.AcquireCall(w, "UploadChunk");
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(s.message(), "UploadChunk: worker 7 has 2 calls in flight; "
                           "distributed.max_inflight_per_worker = 2");
    store.ReleaseCall(w);
    EXPECT_TRUE(store.AcquireCall(w, "UploadChunk").ok());
  }
  // Through the server: an upload held, then Leave frees it (a second
  // Join gets a new id; the old worker's upload is gone with it).
  ASSERT_TRUE(Upload(0, full, sha).ok());
  grpc::ClientContext ctx;
  v1::LeaveRequest leave;
  leave.set_worker_id(worker_);
  v1::LeaveResponse left;
  ASSERT_TRUE(stub_->Leave(&ctx, leave, &left).ok());
  grpc::Status s = Upload(4096, full, sha);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace chunk_transfer_test
}  // namespace fedsim
