// File: tests/fuzz/fuzz_targets.h
//
// The fuzz targets (docs/reliability.md, "Fuzzing"). Each takes the bytes of
// one input: the config target reads them as YAML text, every RPC target
// parses them as its request proto and calls the coordinator's real gRPC
// handlers in-process (CoordinatorServer::InProcessChannel, no network)
// for a tiny run, aborting if an invalid request gets an OK status or a
// reply breaks an invariant. scripts/fuzz.sh links each into a libFuzzer
// binary (fuzz_main.cc); corpus_replay_test.cc feeds them the checked-in
// corpora in normal CI.
#ifndef FEDSIM_TESTS_FUZZ_FUZZ_TARGETS_H_
#define FEDSIM_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>

namespace fedsim::fuzz {

using Target = int (*)(const std::uint8_t* data, std::size_t size);

int Config(const std::uint8_t* data, std::size_t size);
int Join(const std::uint8_t* data, std::size_t size);
int PullTask(const std::uint8_t* data, std::size_t size);
int PushResult(const std::uint8_t* data, std::size_t size);
int Leave(const std::uint8_t* data, std::size_t size);
int FetchChunk(const std::uint8_t* data, std::size_t size);
int UploadChunk(const std::uint8_t* data, std::size_t size);

struct NamedTarget {
  const char* name;  // also the corpus folder: tests/fuzz/corpus/<name>/
  Target fn;
};
inline constexpr NamedTarget kTargets[] = {
    {"config", Config},          {"join", Join},
    {"pull_task", PullTask},     {"push_result", PushResult},
    {"leave", Leave},            {"fetch_chunk", FetchChunk},
    {"upload_chunk", UploadChunk},
};

}  // namespace fedsim::fuzz

#endif  // FEDSIM_TESTS_FUZZ_FUZZ_TARGETS_H_
