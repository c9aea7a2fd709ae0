// fedsim-health: a health probe for fedsim-server (and any gRPC server that
// serves the standard grpc.health.v1.Health service).
//
//   fedsim-health [--addr HOST:PORT] [--service NAME] [--timeout_s S]
//
// Calls Health/Check once and exits 0 iff the answer is SERVING; otherwise
// prints one line on stderr and exits 1 (NOT_SERVING, unreachable, timeout,
// unknown service). Containers use it as their HEALTHCHECK, where Debian
// has no grpc_health_probe.
//
// --addr defaults to $FEDSIM_HEALTH_ADDR, else to 127.0.0.1 on the port of
// $FEDSIM_LISTEN (fedsim-server's listen address), else 127.0.0.1:50051, so
// a probe inside the coordinator's container needs no arguments.
//
// Authentication (docs/security.md): --auth (env FEDSIM_AUTH) tls or mtls
// connects over TLS, checking the server against --tls_ca (FEDSIM_TLS_CA,
// under the name --tls_server_name / FEDSIM_TLS_SERVER_NAME if set); mtls
// also presents --tls_cert/--tls_key (FEDSIM_TLS_CERT/KEY; inside the
// coordinator's container these are the server's own, which then must
// allow client authentication). The health service needs no token, so
// token mode probes in plaintext. An unreadable file exits 2.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tools/cli_help.h"

ABSL_FLAG(std::string, addr, "",
          "server HOST:PORT (default: $FEDSIM_HEALTH_ADDR, else 127.0.0.1 on "
          "the port of $FEDSIM_LISTEN, else 127.0.0.1:50051)");
ABSL_FLAG(std::string, service, "", "service name to ask about ('' = the server)");
ABSL_FLAG(double, timeout_s, 3, "give up after this many seconds");
ABSL_FLAG(std::string, auth, "", "none, token, tls or mtls (default $FEDSIM_AUTH, else none)");
ABSL_FLAG(std::string, tls_ca, "", "tls/mtls: CA certificate (PEM); default $FEDSIM_TLS_CA");
ABSL_FLAG(std::string, tls_cert, "", "mtls: client certificate (PEM); default $FEDSIM_TLS_CERT");
ABSL_FLAG(std::string, tls_key, "", "mtls: client key (PEM); default $FEDSIM_TLS_KEY");
ABSL_FLAG(std::string, tls_server_name, "",
          "name to check the server certificate against; default $FEDSIM_TLS_SERVER_NAME");

namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

std::string DefaultAddress() {
  if (std::string addr = Env("FEDSIM_HEALTH_ADDR"); !addr.empty()) return addr;
  const std::string listen = Env("FEDSIM_LISTEN");
  // The listen address may be 0.0.0.0:P, [::]:P or :P; the probe runs on
  // the same host, so only the port matters.
  const std::size_t colon = listen.rfind(':');
  if (colon != std::string::npos && colon + 1 < listen.size()) {
    return absl::StrCat("127.0.0.1:", listen.substr(colon + 1));
  }
  return "127.0.0.1:50051";
}

std::string FlagOrEnv(const std::string& flag, const char* env) {
  return flag.empty() ? Env(env) : flag;
}

// Reads a PEM file named by `flag`; exits 2 with one line if it cannot.
std::string ReadPem(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  if (in.good()) ss << in.rdbuf();
  if (path.empty() || !in.good() || ss.str().empty()) {
    std::fprintf(stderr, "fedsim-health: %s = %s: cannot read the file (missing, "
                 "unreadable or empty)\n", flag, path.c_str());
    std::exit(2);
  }
  return ss.str();
}

// The canonical name of a gRPC status code (NOT_FOUND, UNAVAILABLE, ...).
std::string CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
      "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i]
                                                            : absl::StrCat("code ", i);
}

}  // namespace

constexpr char kUsage[] =
    "usage: fedsim-health [--addr HOST:PORT] [--service NAME] [--timeout_s S]\n"
    "                     [--auth none|token|tls|mtls]\n"
    "\n"
    "Asks a server's grpc.health.v1 service whether it is SERVING (the\n"
    "container health check). Exit codes: 0 SERVING, 1 not serving or\n"
    "unreachable, 2 bad flags.";

int main(int argc, char** argv) {
  if (fedsim::WantsHelp(argc, argv)) {
    fedsim::PrintHelp(stdout, kUsage, fedsim::FlagsDefinedIn("tools/fedsim_health.cc"));
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage);
  absl::ParseCommandLine(argc, argv);
  std::string addr = absl::GetFlag(FLAGS_addr);
  if (addr.empty()) addr = DefaultAddress();
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (!(timeout_s > 0)) {
    std::fprintf(stderr, "fedsim-health: --timeout_s = %g; must be > 0\n", timeout_s);
    return 2;
  }
  const std::string auth = FlagOrEnv(absl::GetFlag(FLAGS_auth), "FEDSIM_AUTH");
  if (!auth.empty() && auth != "none" && auth != "token" && auth != "tls" &&
      auth != "mtls") {
    std::fprintf(stderr, "fedsim-health: --auth = %s; must be one of none, token, tls, mtls\n",
                 auth.c_str());
    return 2;
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (auth == "tls" || auth == "mtls") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs =
        ReadPem("--tls_ca", FlagOrEnv(absl::GetFlag(FLAGS_tls_ca), "FEDSIM_TLS_CA"));
    if (auth == "mtls") {
      ssl.pem_cert_chain =
          ReadPem("--tls_cert", FlagOrEnv(absl::GetFlag(FLAGS_tls_cert), "FEDSIM_TLS_CERT"));
      ssl.pem_private_key =
          ReadPem("--tls_key", FlagOrEnv(absl::GetFlag(FLAGS_tls_key), "FEDSIM_TLS_KEY"));
    }
    credentials = grpc::SslCredentials(ssl);
    const std::string name =
        FlagOrEnv(absl::GetFlag(FLAGS_tls_server_name), "FEDSIM_TLS_SERVER_NAME");
    if (!name.empty()) args.SetSslTargetNameOverride(name);
  }
  auto channel = grpc::CreateCustomChannel(addr, credentials, args);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(timeout_s)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&ctx, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "fedsim-health: %s: %s: %s\n", addr.c_str(),
                 CodeName(status.error_code()).c_str(), status.error_message().c_str());
    return 1;
  }
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    std::fprintf(stderr, "fedsim-health: %s: %s\n", addr.c_str(),
                 grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                     response.status())
                     .c_str());
    return 1;
  }
  return 0;
}
