// File: common/base/check.h
//
// FEDSIM_CHECK for internal invariants. A failed check prints the condition,
// the place and an optional message, then aborts. Never use it on input that
// a user, a file or a peer can produce: those are absl::Status values.
#ifndef FEDSIM_COMMON_BASE_CHECK_H_
#define FEDSIM_COMMON_BASE_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace fedsim::internal_check {

class CheckFailure {
 public:
  CheckFailure(const char* condition, const char* file, int line) {
    stream_ << file << ":" << line << ": check failed: " << condition << " ";
  }
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  [[noreturn]] ~CheckFailure() {
    std::string text = stream_.str();
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `FEDSIM_CHECK(c) << x` discard the stream expression's value.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace fedsim::internal_check

#define FEDSIM_CHECK(condition)                                   \
  (condition) ? (void)0                                           \
              : ::fedsim::internal_check::Voidify() &             \
                    ::fedsim::internal_check::CheckFailure(       \
                        #condition, __FILE__, __LINE__)           \
                        .stream()

#endif  // FEDSIM_COMMON_BASE_CHECK_H_
