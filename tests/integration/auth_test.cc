// Authentication and authorisation (docs/security.md, RELIABILITY.md §6
// requirements 17 and 18): an in-process coordinator server in each mode,
// raw gRPC stubs for the attacks, real fedsim-client processes for what a
// worker does when refused, and full `fedsim launch` runs in token, TLS and
// mTLS modes equal to the embedded run. Certificates are made at test time
// (common/auth/pki.h).
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/base/build_info.h"
#include "common/auth/auth.h"
#include "common/auth/pki.h"
#include "common/config/config.h"
#include "fedsim/v1/service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/run_builder.h"
#include "server/grpc/coordinator_server.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace auth_test {
namespace {

using test::ReadFile;
using test::Hashes;

constexpr char kConfig[] = R"(
seed: 7
rounds: 3
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 6, partition: natural}
model: {objective: softmax}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg, server_lr: 1}
local: {epochs: 1, batch_size: 10, lr: 0.05}
)";

constexpr char kSecret[] = "0123456789abcdef-shared";

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The auth_rejected lines of a run's events.jsonl.
std::vector<std::string> Rejections(const std::string& dir) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(ReadFile(dir + "/events.jsonl"), '\n')) {
    if (absl::StrContains(line, "\"auth_rejected\"")) out.emplace_back(line);
  }
  return out;
}

// Certificates for one test: a CA, the server (127.0.0.1), clients alice
// and bob, and a second CA that signed nothing the server trusts.
struct Pki {
  PemCertificate ca, server, alice, bob, other_ca, mallory;
  std::string dir;
};

Pki MakePki(const std::string& name) {
  Pki p;
  p.dir = ::testing::TempDir() + "/auth_pki_" + name;
  std::filesystem::create_directories(p.dir);
  p.ca = *MakeCaCertificate("test CA");
  p.server = *MakeLeafCertificate(p.ca, "coordinator", {"IP:127.0.0.1", "DNS:localhost"});
  p.alice = *MakeLeafCertificate(p.ca, "alice", {"DNS:alice"});
  p.bob = *MakeLeafCertificate(p.ca, "bob", {"DNS:bob"});
  p.other_ca = *MakeCaCertificate("other CA");
  p.mallory = *MakeLeafCertificate(p.other_ca, "mallory", {"DNS:mallory"});
  for (auto [file, pem] : std::vector<std::pair<std::string, const PemCertificate*>>{
           {"ca", &p.ca}, {"server", &p.server}, {"alice", &p.alice},
           {"bob", &p.bob}, {"other_ca", &p.other_ca}, {"mallory", &p.mallory}}) {
    WriteFile(p.dir + "/" + file + ".pem", pem->cert_pem);
    WriteFile(p.dir + "/" + file + ".key", pem->key_pem);
  }
  return p;
}

// A coordinator (not running rounds) behind a gRPC server with `auth`.
class Served {
 public:
  Served(const std::string& name, const ServerAuthConfig& auth,
         const std::string& extra_yaml = "") {
    dir_ = ::testing::TempDir() + "/auth_" + name;
    absl::StatusOr<v1::ExperimentConfig> config =
        LoadConfigText(absl::StrCat(kConfig, extra_yaml));
    EXPECT_TRUE(config.ok()) << config.status();
    absl::StatusOr<CoordinatorRun> run = PrepareRun(*config, dir_, "distributed");
    EXPECT_TRUE(run.ok()) << run.status();
    run_ = std::make_unique<CoordinatorRun>(*std::move(run));
    coordinator_ = std::make_unique<Coordinator>(CoordinatorOptions{}, run_.get());
    CoordinatorServer::Options options;
    options.listen = "127.0.0.1:0";
    options.run_id = 1;
    options.auth = auth;
    options.log = run_->log.get();
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
        CoordinatorServer::Start(options, coordinator_.get(), *config);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    model_ = run_->engine->model();
  }
  ~Served() { server_->Shutdown(absl::Seconds(1)); }

  std::string target() const { return absl::StrCat("127.0.0.1:", server_->port()); }
  const std::string& dir() const { return dir_; }
  Coordinator& coordinator() { return *coordinator_; }
  const CoordinatorServer& server() const { return *server_; }
  // The global model has not moved since the server started.
  bool ModelUnchanged() const { return run_->engine->model() == model_; }

 private:
  std::string dir_;
  std::unique_ptr<CoordinatorRun> run_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorServer> server_;
  FlatVector model_;
};

std::unique_ptr<v1::Coordinator::Stub> Stub(const std::string& target,
                                            std::shared_ptr<grpc::ChannelCredentials> creds =
                                                grpc::InsecureChannelCredentials()) {
  return v1::Coordinator::NewStub(grpc::CreateChannel(target, creds));
}

std::shared_ptr<grpc::ChannelCredentials> Tls(const PemCertificate& ca,
                                              const PemCertificate* client = nullptr) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ca.cert_pem;
  if (client != nullptr) {
    o.pem_cert_chain = client->cert_pem;
    o.pem_private_key = client->key_pem;
  }
  return grpc::SslCredentials(o);
}

void Deadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
}

v1::JoinRequest SignedJoin(const std::string& name, const std::string& secret,
                           absl::Time stamp) {
  v1::JoinRequest r;
  r.set_worker_name(name);
  r.set_build_isa(std::string(BuildIsa()));
  r.set_auth_timestamp_ms(absl::ToUnixMillis(stamp));
  r.set_auth_nonce(RandomBytes(kNonceBytes));
  r.set_auth_hmac(JoinHmac(secret, name, r.auth_timestamp_ms(), r.auth_nonce()));
  return r;
}

grpc::Status Join(v1::Coordinator::Stub& stub, const v1::JoinRequest& request,
                  v1::JoinResponse* response = nullptr) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  v1::JoinResponse local;
  return stub.Join(&ctx, request, response != nullptr ? response : &local);
}

grpc::Status Push(v1::Coordinator::Stub& stub, std::uint64_t worker,
                  const std::string& session) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  if (!session.empty()) ctx.AddMetadata("fedsim-session", session);
  v1::PushResultRequest request;
  request.set_worker_id(worker);
  request.mutable_result()->set_task_id(1);
  request.mutable_result()->set_num_examples(1);
  v1::PushResultResponse response;
  return stub.PushResult(&ctx, request, &response);
}

grpc::Status Leave(v1::Coordinator::Stub& stub, std::uint64_t worker,
                   const std::string& session) {
  grpc::ClientContext ctx;
  Deadline(ctx);
  if (!session.empty()) ctx.AddMetadata("fedsim-session", session);
  v1::LeaveRequest request;
  request.set_worker_id(worker);
  v1::LeaveResponse response;
  return stub.Leave(&ctx, request, &response);
}

ServerAuthConfig TokenServer() {
  ServerAuthConfig auth;
  auth.mode = AuthMode::kToken;
  auth.shared_secret = kSecret;
  return auth;
}

ServerAuthConfig TlsServer(const Pki& p, AuthMode mode) {
  ServerAuthConfig auth;
  auth.mode = mode;
  auth.cert_pem = p.server.cert_pem;
  auth.key_pem = p.server.key_pem;
  auth.ca_pem = p.ca.cert_pem;
  return auth;
}

TEST(AuthTest, TokenFileParsing) {
  absl::StatusOr<ServerAuthConfig> c =
      ParseTokenFileText("# comment\nsharedsecret-0123456\nalice alicesecret-012345\n", "f");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->shared_secret, "sharedsecret-0123456");
  EXPECT_EQ(c->worker_secrets.at("alice"), "alicesecret-012345");
  EXPECT_EQ(ParseTokenFileText("short\n", "f").status().message(),
            "--token_file = f line 1: the secret has 5 characters; it must have at least 16");
  EXPECT_FALSE(ParseTokenFileText("a b c\n", "f").ok());
  EXPECT_FALSE(ParseTokenFileText("\n# only a comment\n", "f").ok());
  AuthFiles files;
  files.mode = "token";
  EXPECT_EQ(LoadServerAuth(files).status().message(),
            "--token_file is required with --auth = token");
  files.token_file = "/nonexistent/token";
  EXPECT_EQ(LoadServerAuth(files).status().message(),
            "--token_file = /nonexistent/token: cannot read the file (missing or unreadable)");
  files.mode = "none";
  EXPECT_FALSE(LoadServerAuth(files).ok());  // a token file with --auth=none
  files.mode = "kerberos";
  EXPECT_EQ(LoadServerAuth(files).status().message(),
            "--auth = kerberos; must be one of none, token, tls, mtls");
}

TEST(AuthTest, JoinHmacIsHmacSha256OfTheSigningString) {
  EXPECT_EQ(JoinSigningString("w", 42, std::string("\x01\xff", 2)),
            "fedsim-join-v1\nw\n42\n01ff");
  // printf 'fedsim-join-v1\nw\n42\n01ff' | openssl dgst -sha256 -hmac k
  EXPECT_EQ(HexEncode(JoinHmac("k", "w", 42, std::string("\x01\xff", 2))),
            "14156f7e811d962ab73b28241d8a03d81df1e003b9b10291255bdfc7d0551796");
  EXPECT_NE(JoinHmac("k", "w", 42, "n"), JoinHmac("k", "w", 43, "n"));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

TEST(AuthTest, TokenJoinWithoutOrWithBadTokenIsUnauthenticated) {
  Served served("token_bad", TokenServer());
  auto stub = Stub(served.target());
  v1::JoinRequest plain;
  plain.set_worker_name("w");
  grpc::Status s = Join(*stub, plain);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "carries no token")) << s.error_message();
  s = Join(*stub, SignedJoin("w", "wrong-secret-0123456789", absl::Now()));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "auth: bad token (HMAC mismatch)");
  // A correct MAC over another name does not authenticate this one.
  v1::JoinRequest renamed = SignedJoin("w", kSecret, absl::Now());
  renamed.set_worker_name("v");
  EXPECT_EQ(Join(*stub, renamed).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(served.coordinator().num_workers(), 0);
  const std::vector<std::string> events = Rejections(served.dir());
  ASSERT_EQ(events.size(), 3u);
  EXPECT_TRUE(absl::StrContains(events[0], "carries no token")) << events[0];
  EXPECT_TRUE(absl::StrContains(events[1], "HMAC mismatch")) << events[1];
  EXPECT_TRUE(served.ModelUnchanged());
}

// Anyone who reaches the port can provoke auth_rejected events: they are
// rate limited per peer address, and the rest counted.
TEST(AuthTest, RejectionFloodIsRateLimitedPerPeer) {
  std::string dir;
  {
    Served served("token_flood", TokenServer(),
                  "distributed: {rejection_events_per_minute: 5}\n");
    dir = served.dir();
    auto stub = Stub(served.target());
    for (int i = 0; i < 12; ++i) {
      EXPECT_EQ(Join(*stub, SignedJoin("w", "wrong-secret-0123456789", absl::Now())).error_code(),
                grpc::StatusCode::UNAUTHENTICATED);
    }
    EXPECT_EQ(Rejections(dir).size(), 5u);
    EXPECT_EQ(served.coordinator().num_workers(), 0);
  }
  // The run's log, closed, reports the other 7.
  std::vector<nlohmann::json> suppressed;
  for (absl::string_view line : absl::StrSplit(ReadFile(dir + "/events.jsonl"), '\n')) {
    if (absl::StrContains(line, "\"events_suppressed\"")) {
      suppressed.push_back(nlohmann::json::parse(line));
    }
  }
  ASSERT_EQ(suppressed.size(), 1u);
  EXPECT_EQ(suppressed[0]["key"], "auth_rejected ipv4:127.0.0.1");
  EXPECT_EQ(suppressed[0]["count"], 7);
}

TEST(AuthTest, ReplayedJoinIsRejected) {
  Served served("token_replay", TokenServer());
  auto stub = Stub(served.target());
  const v1::JoinRequest join = SignedJoin("w", kSecret, absl::Now());
  v1::JoinResponse response;
  ASSERT_TRUE(Join(*stub, join, &response).ok());
  EXPECT_EQ(response.session().size(), 64u);
  grpc::Status s = Join(*stub, join);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "auth: replayed join (this nonce was already used)");
  EXPECT_EQ(served.coordinator().num_workers(), 1);
  const std::vector<std::string> events = Rejections(served.dir());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(absl::StrContains(events[0], "replayed join")) << events[0];
}

TEST(AuthTest, JoinTimestampOutsideTheWindowIsRejected) {
  Served served("token_window", TokenServer());
  auto stub = Stub(served.target());
  const absl::Time now = absl::Now();
  for (absl::Duration offset : {absl::Seconds(-306), absl::Seconds(6), absl::Hours(-24)}) {
    grpc::Status s = Join(*stub, SignedJoin("w", kSecret, now + offset));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << offset;
    EXPECT_TRUE(absl::StrContains(s.error_message(), "must be within (-5 s, +305 s)"))
        << s.error_message();
  }
  EXPECT_EQ(served.coordinator().num_workers(), 0);
  // Inside the window on both sides (two workers: a join under a registered
  // name would be that worker again).
  EXPECT_TRUE(Join(*stub, SignedJoin("w", kSecret, now - absl::Seconds(300))).ok());
  EXPECT_TRUE(Join(*stub, SignedJoin("w2", kSecret, now + absl::Seconds(3))).ok());
  EXPECT_EQ(served.coordinator().num_workers(), 2);
  EXPECT_EQ(Rejections(served.dir()).size(), 3u);
}

TEST(AuthTest, PerWorkerSecretsBindTheName) {
  ServerAuthConfig auth;
  auth.mode = AuthMode::kToken;
  auth.worker_secrets = {{"alice", "alice-secret-0123456"}, {"bob", "bob-secret-0123456789"}};
  Served served("token_per_worker", auth);
  auto stub = Stub(served.target());
  EXPECT_TRUE(Join(*stub, SignedJoin("alice", "alice-secret-0123456", absl::Now())).ok());
  // Bob's secret does not let him join as alice; an unlisted name has none.
  EXPECT_EQ(Join(*stub, SignedJoin("alice", "bob-secret-0123456789", absl::Now())).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status s = Join(*stub, SignedJoin("carol", "bob-secret-0123456789", absl::Now()));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "auth: worker name 'carol' has no secret in the token file");
  EXPECT_EQ(served.coordinator().num_workers(), 1);
}

TEST(AuthTest, LaterCallsNeedTheWorkersSession) {
  Served served("token_session", TokenServer());
  auto stub = Stub(served.target());
  v1::JoinResponse a, b;
  ASSERT_TRUE(Join(*stub, SignedJoin("a", kSecret, absl::Now()), &a).ok());
  ASSERT_TRUE(Join(*stub, SignedJoin("b", kSecret, absl::Now()), &b).ok());
  ASSERT_NE(a.session(), b.session());
  // No session: UNAUTHENTICATED; b's session for a's id: PERMISSION_DENIED.
  grpc::Status s = Push(*stub, a.worker_id(), "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = Push(*stub, a.worker_id(), b.session());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(),
            absl::StrCat("auth: the session credential is not that of worker ", a.worker_id()));
  EXPECT_EQ(Leave(*stub, a.worker_id(), b.session()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(served.coordinator().num_workers(), 2);
  // With its own session the call passes and reaches the coordinator, which
  // refuses the empty update.
  EXPECT_EQ(Push(*stub, a.worker_id(), a.session()).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Leave(*stub, a.worker_id(), a.session()).ok());
  EXPECT_EQ(served.coordinator().num_workers(), 1);
  EXPECT_EQ(Rejections(served.dir()).size(), 3u);
  EXPECT_TRUE(served.ModelUnchanged());
}

// Issue 18: a rejoined worker's earlier session, and the session of a
// worker the coordinator unregistered (declared dead), do not stay in the
// table: a join under the same identity replaces the session, and every
// join drops those of workers the coordinator no longer knows.
TEST(AuthTest, SessionsOfReplacedAndUnregisteredWorkersExpire) {
  Served served("token_session_expiry", TokenServer());
  auto stub = Stub(served.target());
  v1::JoinResponse a1, a2, b, c;
  ASSERT_TRUE(Join(*stub, SignedJoin("a", kSecret, absl::Now()), &a1).ok());
  ASSERT_TRUE(Join(*stub, SignedJoin("b", kSecret, absl::Now()), &b).ok());
  EXPECT_EQ(served.server().num_sessions(), 2u);
  // "a" restarted: it rejoins under its name and gets a new id.
  ASSERT_TRUE(Join(*stub, SignedJoin("a", kSecret, absl::Now()), &a2).ok());
  ASSERT_NE(a1.worker_id(), a2.worker_id());
  EXPECT_EQ(served.server().num_sessions(), 2u);
  // The new session works (the call reaches the coordinator, which refuses
  // the empty update).
  EXPECT_EQ(Push(*stub, a2.worker_id(), a2.session()).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // "b" is unregistered behind the server's back (as when declared dead);
  // the next join drops its session.
  ASSERT_TRUE(served.coordinator().Leave(WorkerId(static_cast<std::int64_t>(b.worker_id()))).ok());
  EXPECT_EQ(served.server().num_sessions(), 2u);
  ASSERT_TRUE(Join(*stub, SignedJoin("c", kSecret, absl::Now()), &c).ok());
  EXPECT_EQ(served.server().num_sessions(), 2u);  // a2 and c
  EXPECT_EQ(served.coordinator().num_workers(), 2);
  EXPECT_TRUE(Leave(*stub, a2.worker_id(), a2.session()).ok());
  EXPECT_EQ(served.server().num_sessions(), 1u);
}

TEST(AuthTest, MtlsBindsTheWorkerToItsCertificate) {
  const Pki pki = MakePki("mtls_bind");
  Served served("mtls_bind", TlsServer(pki, AuthMode::kMtls));
  auto alice = Stub(served.target(), Tls(pki.ca, &pki.alice));
  auto bob = Stub(served.target(), Tls(pki.ca, &pki.bob));
  v1::JoinRequest request;
  request.set_worker_name("i-am-carol");  // the certificate decides
  request.set_build_isa(std::string(BuildIsa()));
  v1::JoinResponse a, b;
  ASSERT_TRUE(Join(*alice, request, &a).ok());
  ASSERT_TRUE(Join(*bob, request, &b).ok());
  const std::string events = ReadFile(served.dir() + "/events.jsonl");
  EXPECT_TRUE(absl::StrContains(events, "\"name\":\"alice\"")) << events;
  EXPECT_TRUE(absl::StrContains(events, "\"name\":\"bob\"")) << events;
  EXPECT_FALSE(absl::StrContains(events, "i-am-carol"));
  // Bob cannot push or leave for alice's worker id, even with alice's session.
  for (const std::string& session : {b.session(), a.session()}) {
    grpc::Status s = Push(*bob, a.worker_id(), session);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(s.error_message(),
              absl::StrCat("auth: worker ", a.worker_id(),
                           " was registered by certificate 'alice'; this call comes from 'bob'"));
  }
  EXPECT_EQ(Leave(*bob, a.worker_id(), a.session()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(served.coordinator().num_workers(), 2);
  EXPECT_EQ(Rejections(served.dir()).size(), 3u);
  EXPECT_TRUE(served.ModelUnchanged());
}

TEST(AuthTest, MtlsRefusesClientsWithoutATrustedCertificate) {
  const Pki pki = MakePki("mtls_refuse");
  Served served("mtls_refuse", TlsServer(pki, AuthMode::kMtls));
  v1::JoinRequest request;
  request.set_worker_name("w");
  // No client certificate, a certificate from another CA, plaintext.
  for (auto creds : {Tls(pki.ca), Tls(pki.ca, &pki.mallory), grpc::InsecureChannelCredentials()}) {
    auto stub = Stub(served.target(), creds);
    grpc::Status s = Join(*stub, request);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  }
  EXPECT_EQ(served.coordinator().num_workers(), 0);
  // The server's certificate from an untrusted CA is refused by the client.
  auto stub = Stub(served.target(), Tls(pki.other_ca, &pki.alice));
  EXPECT_EQ(Join(*stub, request).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(served.coordinator().num_workers(), 0);
}

// Runs fedsim-client with `flags` against `target`; returns its exit status
// and output.
std::pair<int, std::string> RunWorker(const std::string& target, const std::string& flags) {
  const std::string cmd = absl::StrCat(FEDSIM_BINARY_DIR "/bin/fedsim-client --server=", target,
                                       " --name=w --max_unreachable_s=3 ", flags, " 2>&1");
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (pipe != nullptr && std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  const int status = pipe == nullptr ? -1 : ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// The last line of a worker's output (its one-line error).
std::string LastLine(const std::string& out) {
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : lines.back();
}

TEST(AuthTest, WorkersGiveUpAtOnceWhenRefused) {
  const Pki pki = MakePki("worker_refused");
  {
    Served served("worker_token", TokenServer());
    WriteFile(pki.dir + "/bad_token", "not-the-right-secret-000\n");
    for (const std::string& flags :
         {std::string("--auth=none"), "--auth=token --token_file=" + pki.dir + "/bad_token"}) {
      const absl::Time start = absl::Now();
      auto [code, out] = RunWorker(served.target(), flags);
      EXPECT_EQ(code, 1) << out;
      EXPECT_TRUE(absl::StartsWith(LastLine(out), "fedsim-client: join: auth: ")) << out;
      // Refused at the first try, not after retrying for --max_unreachable_s.
      EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << out;
    }
    EXPECT_EQ(served.coordinator().num_workers(), 0);
    EXPECT_EQ(Rejections(served.dir()).size(), 2u);
  }
  {
    Served served("worker_tls", TlsServer(pki, AuthMode::kMtls));
    const std::string ca = "--tls_ca=" + pki.dir + "/ca.pem";
    // {flags, what the one line says}
    const std::vector<std::pair<std::string, std::string>> cases = {
        // wrong CA: the worker refuses the coordinator at once
        {"--auth=tls --tls_ca=" + pki.dir + "/other_ca.pem",
         "fedsim-client: join: TLS handshake with " + served.target() +
             " failed: failed to connect to all addresses"},
        // mTLS without a client certificate: the coordinator closes the
        // connection, which the worker retries until --max_unreachable_s
        {"--auth=tls " + ca, "does it require a client certificate this worker lacks"},
        // a client certificate of another CA: the same
        {"--auth=mtls " + ca + " --tls_cert=" + pki.dir + "/mallory.pem --tls_key=" +
             pki.dir + "/mallory.key",
         "does it require a client certificate this worker lacks"},
        // plaintext worker to a TLS coordinator: waits for a ready channel
        {"--auth=none", "fedsim-client: join: Deadline Exceeded"}};
    for (const auto& [flags, want] : cases) {
      const absl::Time start = absl::Now();
      auto [code, out] = RunWorker(served.target(), flags);
      EXPECT_EQ(code, 1) << flags << "\n" << out;
      EXPECT_TRUE(absl::StrContains(LastLine(out), want)) << flags << "\n" << out;
      if (absl::StrContains(want, "TLS handshake")) {
        EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << out;  // no retrying
      } else {
        // Given up after --max_unreachable_s = 3: no call (the plaintext
        // join waiting for a ready channel included) outlasts it.
        EXPECT_LT(absl::Now() - start, absl::Seconds(15)) << out;
      }
    }
    EXPECT_EQ(served.coordinator().num_workers(), 0);
    EXPECT_TRUE(served.ModelUnchanged());
  }
}

TEST(AuthTest, MissingSecretFilesAreOneLineErrorsWithExit2) {
  auto [code, out] = RunWorker("127.0.0.1:1", "--auth=mtls --tls_ca=/nonexistent/ca.pem");
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, "fedsim-client: --tls_ca = /nonexistent/ca.pem: cannot read the file "
                 "(missing or unreadable)\n");
}

TEST(AuthTest, BadWorkerFlagsAreOneLineErrorsWithExit2) {
  for (const auto& [flag, line] : std::vector<std::pair<std::string, std::string>>{
           {"--parallel=0", "fedsim-client: --parallel = 0; must be >= 1\n"},
           {"--max_unreachable_s=0",
            "fedsim-client: --max_unreachable_s = 0; must be finite and > 0\n"},
           {"--max_unreachable_s=-2",
            "fedsim-client: --max_unreachable_s = -2; must be finite and > 0\n"}}) {
    auto [code, out] = RunWorker("127.0.0.1:1", flag);
    EXPECT_EQ(code, 2) << flag;
    EXPECT_EQ(out, line);
  }
}

std::string RunTiny(const std::string& name, std::optional<AuthMode> launch) {
  // 610 parameters (4880 bytes) in 1024-byte chunks: the chunk RPCs
  // (FetchChunk, UploadChunk) must pass authentication too.
  absl::StatusOr<v1::ExperimentConfig> config =
      LoadConfigText(absl::StrCat(kConfig, "distributed: {chunk_bytes: 1024}\n"));
  EXPECT_TRUE(config.ok()) << config.status();
  const std::string dir = ::testing::TempDir() + "/auth_run_" + name;
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(*config, dir, launch.has_value() ? "distributed" : "embedded");
  EXPECT_TRUE(run.ok()) << run.status();
  absl::StatusOr<RunSummary> summary;
  if (!launch.has_value()) {
    summary = RunEmbedded(*run);
  } else {
    LaunchOptions options;
    options.workers = 2;
    options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
    options.auth = *launch;
    summary = LaunchRun(*run, options);
  }
  EXPECT_TRUE(summary.ok()) << name << ": " << summary.status();
  return dir;
}

TEST(AuthTest, LaunchInEveryModeEqualsTheEmbeddedRun) {
  const std::vector<std::string> embedded = Hashes(RunTiny("embedded", std::nullopt));
  ASSERT_EQ(embedded.size(), 3u);  // one row per round
  EXPECT_NE(embedded.front(), embedded.back());
  auto launch_dirs = [] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/tmp")) {
      n += absl::StartsWith(e.path().filename().string(), "fedsim-launch-");
    }
    return n;
  };
  const int before = launch_dirs();
  for (auto [name, mode] : std::vector<std::pair<std::string, AuthMode>>{
           {"token", AuthMode::kToken}, {"tls", AuthMode::kTls}, {"mtls", AuthMode::kMtls}}) {
    const std::string dir = RunTiny(name, mode);
    EXPECT_EQ(Hashes(dir), embedded) << name;
    EXPECT_TRUE(Rejections(dir).empty()) << name;
    const std::string config_json = ReadFile(dir + "/config.json");
    EXPECT_FALSE(absl::StrContains(config_json, "BEGIN")) << name;
    // The workers joined under their certificate names (mtls) or theirs.
    EXPECT_TRUE(absl::StrContains(ReadFile(dir + "/events.jsonl"), "\"name\":\"worker-1\""))
        << name;
  }
  // The secrets' directories are gone (when TMPDIR is /tmp or unset).
  if (std::getenv("TMPDIR") == nullptr) {
    EXPECT_EQ(launch_dirs(), before);
  }
}

}  // namespace
}  // namespace auth_test
}  // namespace fedsim
