// Tests of common/codec and common/runlog: the float64 wire format, the
// model hash, the task and result codecs, the metrics and events files and
// the model file format.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/task.h"
#include "common/base/types.h"
#include "common/codec/flat_bytes.h"
#include "common/codec/task_codec.h"
#include "common/runlog/run_log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fedsim {
namespace codec_test {
namespace {

using ::testing::HasSubstr;

namespace fs = std::filesystem;

FlatVector Vec(std::initializer_list<double> values) {
  FlatVector v(static_cast<Eigen::Index>(values.size()));
  Eigen::Index i = 0;
  for (double x : values) v[i++] = x;
  return v;
}

bool SameBits(const FlatVector& a, const FlatVector& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

// Values that a lossy or text encoding would get wrong.
FlatVector Awkward() {
  return Vec({0.1, -0.0, 0.0, std::numeric_limits<double>::max(),
              std::numeric_limits<double>::lowest(),
              std::numeric_limits<double>::denorm_min(),
              std::numeric_limits<double>::min(), 1.0 / 3.0, -1e-300});
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("fedsim_codec_test_", info->test_suite_name(), "_",
                        info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TempDir() { fs::remove_all(dir_); }
  fs::path path() const { return dir_; }

 private:
  fs::path dir_;
};

// ---------------------------------------------------------------------------
// flat_bytes

TEST(FlatBytesTest, RoundTripIsBitExact) {
  const FlatVector v = Awkward();
  const std::string bytes = EncodeFlat(v);
  ASSERT_EQ(bytes.size(), 8u * v.size());
  absl::StatusOr<FlatVector> back = DecodeFlat(bytes, v.size(), "test");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(SameBits(*back, v));
  EXPECT_TRUE(std::signbit((*back)[1]));  // -0.0 stays negative
}

TEST(FlatBytesTest, LittleEndianFloat64Layout) {
  // 1.0 is 0x3FF0000000000000: little-endian puts 0xF0 0x3F last.
  const std::string bytes = EncodeFlat(Vec({1.0}));
  EXPECT_EQ(bytes, std::string("\x00\x00\x00\x00\x00\x00\xf0\x3f", 8));
}

TEST(FlatBytesTest, EmptyVector) {
  EXPECT_EQ(EncodeFlat(FlatVector(0)), "");
  absl::StatusOr<FlatVector> back = DecodeFlat("", 0, "empty");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->size(), 0);
}

TEST(FlatBytesTest, WrongLengthRejectedNamingWhat) {
  const std::string bytes = EncodeFlat(Vec({1.0, 2.0, 3.0}));
  for (std::int64_t expected : {2, 4}) {
    absl::StatusOr<FlatVector> v = DecodeFlat(bytes, expected, "client 5 update");
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(), HasSubstr("client 5 update"));
    EXPECT_THAT(v.status().message(), HasSubstr("24 bytes"));
  }
  // Not a multiple of 8.
  absl::StatusOr<FlatVector> odd = DecodeFlat(bytes.substr(0, 23), 3, "odd");
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeFlat(bytes, -3, "negative").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FlatBytesTest, NonFiniteValuesRejectedNamingTheIndex) {
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::signaling_NaN(),
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity()};
  for (double bad : specials) {
    FlatVector v = Vec({1.0, 2.0, 3.0, 4.0, 5.0});
    v[3] = bad;
    absl::StatusOr<FlatVector> back = DecodeFlat(EncodeFlat(v), 5, "params");
    ASSERT_FALSE(back.ok()) << bad;
    EXPECT_EQ(back.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(back.status().message(), HasSubstr("params value 3 is"));
  }
  // The first bad index is reported.
  FlatVector two = Vec({1.0, std::nan(""), std::nan("")});
  EXPECT_THAT(DecodeFlat(EncodeFlat(two), 3, "x").status().message(),
              HasSubstr("value 1 "));
}

TEST(ModelHashTest, StableLiteral) {
  // SHA-256 of the 48 little-endian float64 bytes, first 16 hex digits,
  // computed independently (Python hashlib over struct.pack('<6d', ...)).
  EXPECT_EQ(ModelHash(Vec({1.0, -2.5, 0.1, 1e-300, -0.0, 3.141592653589793})),
            "02443002aa6bc865");
  // SHA-256 of the empty string.
  EXPECT_EQ(ModelHash(FlatVector(0)), "e3b0c44298fc1c14");
}

TEST(ModelHashTest, SensitiveToEveryBit) {
  const FlatVector v = Awkward();
  const std::string h = ModelHash(v);
  EXPECT_EQ(h.size(), 16u);
  FlatVector w = v;
  w[2] = -0.0;  // +0.0 -> -0.0: equal as numbers, different bits
  EXPECT_NE(ModelHash(w), h);
  w = v;
  w[0] = std::nextafter(v[0], 1.0);
  EXPECT_NE(ModelHash(w), h);
  EXPECT_EQ(ModelHash(v), h);
}

// ---------------------------------------------------------------------------
// task_codec

TEST(TaskCodecTest, TaskRoundTrip) {
  Task t;
  t.id = TaskId(123456789012LL);
  t.round = 42;
  t.client = ClientId(17);
  t.params = std::make_shared<const FlatVector>(Awkward());
  t.local.epochs = 3;
  t.local.batch_size = 0;
  t.local.lr = 0.1 + 0.2;
  t.local.max_steps = 11;
  t.local.momentum = 0.9;
  t.local.fresh_batches = true;
  t.local.grad_clip_norm = 1e4;
  v1::Task msg;
  EncodeTask(t, msg);
  absl::StatusOr<Task> back = DecodeTask(msg, t.params->size());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, t.id);
  EXPECT_EQ(back->round, t.round);
  EXPECT_EQ(back->client, t.client);
  EXPECT_TRUE(SameBits(*back->params, *t.params));
  EXPECT_EQ(back->local.epochs, 3);
  EXPECT_EQ(back->local.batch_size, 0);
  EXPECT_EQ(back->local.lr, 0.1 + 0.2);
  EXPECT_EQ(back->local.max_steps, 11);
  EXPECT_EQ(back->local.momentum, 0.9);
  EXPECT_TRUE(back->local.fresh_batches);
  EXPECT_EQ(back->local.grad_clip_norm, 1e4);
  // Through the wire bytes too.
  v1::Task reparsed;
  ASSERT_TRUE(reparsed.ParseFromString(msg.SerializeAsString()));
  absl::StatusOr<Task> again = DecodeTask(reparsed, t.params->size());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(SameBits(*again->params, *t.params));
}

TEST(TaskCodecTest, TaskWithWrongSizeOrNaNRejected) {
  Task t;
  t.id = TaskId(9);
  t.params = std::make_shared<const FlatVector>(Vec({1.0, 2.0}));
  v1::Task msg;
  EncodeTask(t, msg);
  absl::StatusOr<Task> wrong = DecodeTask(msg, 3);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("task 9 parameters"));
  t.params = std::make_shared<const FlatVector>(
      Vec({1.0, std::numeric_limits<double>::infinity()}));
  EncodeTask(t, msg);
  EXPECT_THAT(DecodeTask(msg, 2).status().message(), HasSubstr("value 1"));
}

TEST(TaskCodecTest, ResultRoundTrip) {
  ClientResult r;
  r.task = TaskId(77);
  r.client = ClientId(5);
  r.update = Awkward();
  r.num_examples = 600;
  r.num_steps = 19;
  r.train_loss = 0.6931471805599453;
  v1::Result msg;
  EncodeResult(r, msg);
  v1::Result reparsed;
  ASSERT_TRUE(reparsed.ParseFromString(msg.SerializeAsString()));
  absl::StatusOr<ClientResult> back = DecodeResult(reparsed, r.update.size());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->task, r.task);
  EXPECT_EQ(back->client, r.client);
  EXPECT_TRUE(SameBits(back->update, r.update));
  EXPECT_EQ(back->num_examples, 600);
  EXPECT_EQ(back->num_steps, 19);
  EXPECT_EQ(back->train_loss, r.train_loss);
}

TEST(TaskCodecTest, ResultWithWrongSizeOrNaNRejectedNamingTaskAndClient) {
  ClientResult r;
  r.task = TaskId(8);
  r.client = ClientId(3);
  r.update = Vec({1.0, std::numeric_limits<double>::quiet_NaN(), 2.0});
  v1::Result msg;
  EncodeResult(r, msg);
  absl::StatusOr<ClientResult> nan = DecodeResult(msg, 3);
  ASSERT_FALSE(nan.ok());
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nan.status().message(), HasSubstr("task 8"));
  EXPECT_THAT(nan.status().message(), HasSubstr("client 3"));
  EXPECT_THAT(nan.status().message(), HasSubstr("value 1"));
  EXPECT_EQ(DecodeResult(msg, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// FedProx's mu and SCAFFOLD's c (down) and Delta c_i (up) travel exactly.
TEST(TaskCodecTest, BaselineFieldsRoundTrip) {
  Task t;
  t.id = TaskId(31);
  t.client = ClientId(2);
  t.params = std::make_shared<const FlatVector>(Awkward());
  t.local.prox_mu = 0.1 + 0.2;
  t.scaffold = ScaffoldTaskFields{std::make_shared<const FlatVector>(Awkward().reverse()),
                                  ScaffoldOption::kOptionI};
  v1::Task msg;
  EncodeTask(t, msg);
  v1::Task reparsed;
  ASSERT_TRUE(reparsed.ParseFromString(msg.SerializeAsString()));
  absl::StatusOr<Task> back = DecodeTask(reparsed, t.params->size());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->local.prox_mu, 0.1 + 0.2);
  ASSERT_TRUE(back->scaffold.has_value());
  EXPECT_FALSE(back->scafflsa.has_value());
  EXPECT_TRUE(SameBits(*back->scaffold->server_control, *t.scaffold->server_control));
  EXPECT_EQ(back->scaffold->option, ScaffoldOption::kOptionI);

  ClientResult r;
  r.task = TaskId(31);
  r.client = ClientId(2);
  r.update = Awkward();
  r.control_delta = Awkward() * 0.5;
  v1::Result rmsg;
  EncodeResult(r, rmsg);
  absl::StatusOr<ClientResult> rback = DecodeResult(rmsg, r.update.size());
  ASSERT_TRUE(rback.ok()) << rback.status();
  EXPECT_TRUE(SameBits(rback->control_delta, r.control_delta));

  // Without SCAFFOLD nothing extra is sent or decoded.
  Task plain;
  plain.id = TaskId(32);
  plain.params = t.params;
  v1::Task pmsg;
  EncodeTask(plain, pmsg);
  EXPECT_TRUE(pmsg.server_control().empty());
  absl::StatusOr<Task> pback = DecodeTask(pmsg, t.params->size());
  ASSERT_TRUE(pback.ok());
  EXPECT_FALSE(pback->scaffold.has_value());
  EXPECT_FALSE(pback->scafflsa.has_value());
  EXPECT_EQ(pback->local.prox_mu, 0.0);
  ClientResult pr;
  pr.update = Awkward();
  v1::Result prmsg;
  EncodeResult(pr, prmsg);
  EXPECT_TRUE(prmsg.control_delta().empty());
}

// SCAFFLSA sends its anchor in server_control without a SCAFFOLD option,
// with the round the anchor closed; an anchor_round outside [0, round) is
// refused with one line.
TEST(TaskCodecTest, AnchorWithoutScaffoldOptionRoundTrips) {
  Task t;
  t.id = TaskId(41);
  t.round = 9;
  t.client = ClientId(2);
  t.params = std::make_shared<const FlatVector>(Vec({1.0, 2.0}));
  t.scafflsa = ScaffLsaTaskFields{std::make_shared<const FlatVector>(Vec({0.1, -0.2})), 7};
  v1::Task msg;
  EncodeTask(t, msg);
  absl::StatusOr<Task> back = DecodeTask(msg, 2);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(msg.scaffold_option(), 0);
  ASSERT_TRUE(back->scafflsa.has_value());
  EXPECT_FALSE(back->scaffold.has_value());
  EXPECT_EQ(*back->scafflsa->anchor, *t.scafflsa->anchor);
  EXPECT_EQ(back->scafflsa->anchor_round, 7);
  for (std::int64_t bad : {-1, 9, 12}) {
    msg.set_anchor_round(bad);
    absl::StatusOr<Task> refused = DecodeTask(msg, 2);
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(refused.status().message().find(absl::StrCat("anchor_round = ", bad)),
              std::string::npos) << refused.status();
  }
  // No anchor: none on the wire, none decoded.
  t.scafflsa.reset();
  v1::Task none;
  EncodeTask(t, none);
  EXPECT_TRUE(none.server_control().empty());
  EXPECT_EQ(none.anchor_round(), 0);
  absl::StatusOr<Task> plain = DecodeTask(none, 2);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->scafflsa.has_value());
}

TEST(TaskCodecTest, BadBaselineFieldsRejected) {
  Task t;
  t.id = TaskId(40);
  t.client = ClientId(1);
  t.params = std::make_shared<const FlatVector>(Vec({1.0, 2.0}));
  t.scaffold = ScaffoldTaskFields{std::make_shared<const FlatVector>(Vec({1.0, 2.0, 3.0})),
                                  ScaffoldOption::kOptionII};
  v1::Task msg;
  EncodeTask(t, msg);
  EXPECT_THAT(DecodeTask(msg, 2).status().message(),
              HasSubstr("task 40 server_control"));
  msg.clear_server_control();
  EXPECT_THAT(DecodeTask(msg, 2).status().message(),
              HasSubstr("scaffold_option = 2 without server_control"));
  msg.set_scaffold_option(7);
  EXPECT_THAT(DecodeTask(msg, 2).status().message(),
              HasSubstr("scaffold_option = 7"));
  ClientResult r;
  r.task = TaskId(40);
  r.client = ClientId(1);
  r.update = Vec({1.0, 2.0});
  r.control_delta = Vec({1.0, std::numeric_limits<double>::quiet_NaN()});
  v1::Result rmsg;
  EncodeResult(r, rmsg);
  absl::StatusOr<ClientResult> bad = DecodeResult(rmsg, 2);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("control_delta"));
}

// ---------------------------------------------------------------------------
// run_log

TEST(RunLogTest, MetricsCsvParsesWithEmptyNaNCells) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "run" / "nested";
  absl::StatusOr<std::unique_ptr<RunLog>> log = RunLog::Create(dir.string());
  ASSERT_TRUE(log.ok()) << log.status();
  MetricsRow a;
  a.round = 0;
  a.wall_time_s = 0.125;
  a.train_loss = 0.1 + 0.2;  // needs 17 digits
  a.test_loss = 2.0 / 3.0;
  a.test_accuracy = 0.8125;
  a.client_loss = 1e-300;
  a.dist_to_opt = NAN;
  a.participants = 10;
  a.bytes_up = 628000;
  a.bytes_down = 628000;
  a.model_hash = "0123456789abcdef";
  a.epsilon_max = 2.5;
  a.epsilon_mean = 1.0 / 3.0;
  a.virtual_time = 2.75;
  MetricsRow b;  // defaults: every measured cell NaN
  b.round = 1;
  b.model_hash = "fedcba9876543210";
  ASSERT_TRUE((*log)->Metrics(a).ok());
  ASSERT_TRUE((*log)->Metrics(b).ok());

  std::istringstream csv(ReadFile(dir / "metrics.csv"));
  std::string line;
  ASSERT_TRUE(std::getline(csv, line));
  EXPECT_EQ(line, kMetricsColumns);
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  ASSERT_EQ(header.size(), 14u);

  ASSERT_TRUE(std::getline(csv, line));
  std::vector<std::string> cells = absl::StrSplit(line, ',');
  ASSERT_EQ(cells.size(), header.size()) << line;
  EXPECT_EQ(cells[0], "0");
  EXPECT_EQ(std::stod(cells[1]), 0.125);
  EXPECT_EQ(std::stod(cells[2]), 0.1 + 0.2);  // exact round trip
  EXPECT_EQ(std::stod(cells[3]), 2.0 / 3.0);
  EXPECT_EQ(std::stod(cells[4]), 0.8125);
  EXPECT_EQ(std::stod(cells[5]), 1e-300);
  EXPECT_EQ(cells[6], "");  // dist_to_opt unknown
  EXPECT_EQ(cells[7], "10");
  EXPECT_EQ(cells[8], "628000");
  EXPECT_EQ(cells[9], "628000");
  EXPECT_EQ(cells[10], "0123456789abcdef");
  EXPECT_EQ(header[11], "epsilon_max");
  EXPECT_EQ(std::stod(cells[11]), 2.5);
  EXPECT_EQ(std::stod(cells[12]), 1.0 / 3.0);
  EXPECT_EQ(header[13], "virtual_time");
  EXPECT_EQ(std::stod(cells[13]), 2.75);

  ASSERT_TRUE(std::getline(csv, line));
  cells = absl::StrSplit(line, ',');
  ASSERT_EQ(cells.size(), header.size()) << line;
  EXPECT_EQ(cells[0], "1");
  for (int i = 2; i <= 6; ++i) EXPECT_EQ(cells[i], "") << header[i];
  EXPECT_EQ(cells[10], "fedcba9876543210");
  EXPECT_EQ(cells[11], "");  // no DP
  EXPECT_EQ(cells[12], "");
  EXPECT_EQ(cells[13], "");  // synchronous run
  EXPECT_FALSE(std::getline(csv, line));
}

TEST(RunLogTest, EventsAreOneJsonObjectPerLine) {
  TempDir tmp;
  absl::StatusOr<std::unique_ptr<RunLog>> log = RunLog::Create(tmp.path().string());
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Event({{"event", "run_start"}, {"seed", 3}}).ok());
  ASSERT_TRUE((*log)->Event({{"event", "note"}, {"text", "line\nbreak"}}).ok());
  std::istringstream events(ReadFile(tmp.path() / "events.jsonl"));
  std::string line;
  std::vector<nlohmann::json> parsed;
  while (std::getline(events, line)) parsed.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0]["event"], "run_start");
  EXPECT_EQ(parsed[0]["seed"], 3);
  EXPECT_EQ(parsed[1]["text"], "line\nbreak");
  ASSERT_TRUE((*log)->WriteFile("config.json", "{}\n").ok());
  EXPECT_EQ(ReadFile(tmp.path() / "config.json"), "{}\n");
}

// At most `burst` events per key and window; the rest are counted and
// reported once, when the key's next window opens with an event or when the
// log closes.
TEST(RunLogTest, LimitedEventsAreCountedBeyondTheBurst) {
  TempDir tmp;
  absl::Time now = absl::FromUnixSeconds(1000);
  {
    auto log = RunLog::Create(tmp.path().string());
    ASSERT_TRUE(log.ok());
    (*log)->SetEventLimit(3, absl::Seconds(60), [&now] { return now; });
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE((*log)->LimitedEvent("a", {{"event", "x"}, {"i", i}}).ok());
      now += absl::Seconds(1);
    }
    ASSERT_TRUE((*log)->LimitedEvent("b", {{"event", "y"}}).ok());
    // Unlimited events are never held back.
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*log)->Event({{"event", "z"}}).ok());
    // A minute after the window opened: key a's suppressed count first,
    // then the event.
    now = absl::FromUnixSeconds(1060);
    ASSERT_TRUE((*log)->LimitedEvent("a", {{"event", "x"}, {"i", 10}}).ok());
    for (int i = 11; i < 15; ++i) ASSERT_TRUE((*log)->LimitedEvent("a", {{"event", "x"}, {"i", i}}).ok());
  }  // closing reports the last window's 2
  std::istringstream events(ReadFile(tmp.path() / "events.jsonl"));
  std::string line;
  std::vector<std::string> kinds;
  std::vector<nlohmann::json> suppressed;
  while (std::getline(events, line)) {
    const nlohmann::json e = nlohmann::json::parse(line);
    kinds.push_back(e["event"].get<std::string>() +
                    (e.contains("i") ? std::to_string(e["i"].get<int>()) : ""));
    if (e["event"] == "events_suppressed") suppressed.push_back(e);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"x0", "x1", "x2", "y", "z", "z", "z", "z", "z",
                                             "events_suppressed", "x10", "x11", "x12",
                                             "events_suppressed"}));
  ASSERT_EQ(suppressed.size(), 2u);
  EXPECT_EQ(suppressed[0]["key"], "a");
  EXPECT_EQ(suppressed[0]["count"], 7);
  EXPECT_EQ(suppressed[0]["first"], "1970-01-01T00:16:43+00:00");
  EXPECT_EQ(suppressed[0]["last"], "1970-01-01T00:16:49+00:00");
  EXPECT_EQ(suppressed[1]["count"], 2);
}

TEST(RunLogTest, CreateTruncatesEarlierFiles) {
  TempDir tmp;
  {
    auto log = RunLog::Create(tmp.path().string());
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Event({{"event", "old"}}).ok());
  }
  auto log = RunLog::Create(tmp.path().string());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(ReadFile(tmp.path() / "events.jsonl"), "");
  EXPECT_EQ(ReadFile(tmp.path() / "metrics.csv"),
            absl::StrCat(kMetricsColumns, "\n"));
}

TEST(ModelFileTest, RoundTripAndDocumentedLayout) {
  TempDir tmp;
  const std::string path = (tmp.path() / "model.bin").string();
  const FlatVector v = Awkward();
  ASSERT_TRUE(WriteModelFile(path, v).ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const std::string bytes = ReadFile(path);
  ASSERT_EQ(bytes.size(), 24u + 8u * v.size());
  EXPECT_EQ(bytes.substr(0, 8), "FEDSIMMD");
  std::uint32_t version = 0, type = 0;
  std::uint64_t count = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&type, bytes.data() + 12, 4);
  std::memcpy(&count, bytes.data() + 16, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(type, 1u);
  EXPECT_EQ(count, static_cast<std::uint64_t>(v.size()));
  EXPECT_EQ(bytes.substr(24), EncodeFlat(v));
  absl::StatusOr<FlatVector> back = ReadModelFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(SameBits(*back, v));
}

TEST(ModelFileTest, EmptyModelRoundTrips) {
  TempDir tmp;
  const std::string path = (tmp.path() / "empty.bin").string();
  ASSERT_TRUE(WriteModelFile(path, FlatVector(0)).ok());
  absl::StatusOr<FlatVector> back = ReadModelFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size(), 0);
}

TEST(ModelFileTest, DamagedFilesRejected) {
  TempDir tmp;
  const fs::path good = tmp.path() / "good.bin";
  ASSERT_TRUE(WriteModelFile(good.string(), Vec({1.0, 2.0, 3.0})).ok());
  const std::string bytes = ReadFile(good);

  struct Case {
    std::string name;
    std::string bytes;
    std::string message;
  };
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  std::string bad_version = bytes;
  bad_version[8] = 2;
  std::string bad_type = bytes;
  bad_type[12] = 2;
  std::string nan_value = bytes;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::memcpy(nan_value.data() + 24 + 8, &nan, 8);
  const std::vector<Case> cases = {
      {"truncated_values", bytes.substr(0, bytes.size() - 1), "header says 3 values"},
      {"truncated_header", bytes.substr(0, 20), "bad header"},
      {"empty", "", "bad header"},
      {"trailing", bytes + "x", "header says 3 values"},
      {"bad_magic", bad_magic, "bad header"},
      {"bad_version", bad_version, "format version 2"},
      {"bad_type", bad_type, "value type 2"},
      {"nan", nan_value, "value 1"},
  };
  for (const Case& c : cases) {
    const fs::path path = tmp.path() / (c.name + ".bin");
    WriteBytes(path, c.bytes);
    absl::StatusOr<FlatVector> v = ReadModelFile(path.string());
    ASSERT_FALSE(v.ok()) << c.name;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(v.status().message(), HasSubstr(c.message)) << c.name;
    EXPECT_THAT(v.status().message(), HasSubstr(path.string())) << c.name;
  }
  // A header claiming an absurd count must not allocate it.
  std::string huge = bytes;
  const std::uint64_t count = std::uint64_t{1} << 62;
  std::memcpy(huge.data() + 16, &count, 8);
  WriteBytes(tmp.path() / "huge.bin", huge);
  EXPECT_EQ(ReadModelFile((tmp.path() / "huge.bin").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ModelFileTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadModelFile("/nonexistent/fedsim/model.bin").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace codec_test
}  // namespace fedsim
