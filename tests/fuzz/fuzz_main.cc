// libFuzzer entry point of one target, chosen at compile time with
// -DFEDSIM_FUZZ_TARGET=Join (scripts/fuzz.sh).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fedsim::fuzz::FEDSIM_FUZZ_TARGET(data, size);
}
