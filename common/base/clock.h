// File: common/base/clock.h
//
// The time source of the coordinator and the drive loop (leveldb's Env,
// tensorstore's injected clock): every deadline, last-seen time, wall-clock
// tick and elapsed run time is read from one Clock, so that tests can run
// the coordinator on a fake clock (tests/testing/fake_clock.h) and decide
// when time passes, without sleeping.
//
// Thread safety: implementations are thread-safe.
#ifndef FEDSIM_COMMON_BASE_CLOCK_H_
#define FEDSIM_COMMON_BASE_CLOCK_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace fedsim {

class Clock {
 public:
  virtual ~Clock() = default;

  // The current time. Never decreases.
  virtual absl::Time Now() = 0;

  // With `lock` held (and `cv` the condition variable its mutex guards):
  // waits until `cv` is notified or Now() >= `deadline`, whichever comes
  // first. Spurious returns are allowed; callers re-check their condition.
  virtual void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                         absl::Time deadline) = 0;

  // The real clock: absl::Now() when the process first asked, advanced by
  // the monotonic clock since (so it never jumps with the system time).
  static Clock* Real();
};

// The real clock (Clock::Real() returns one).
class RealClock : public Clock {
 public:
  RealClock()
      : anchor_(absl::Now()), steady_anchor_(std::chrono::steady_clock::now()) {}

  absl::Time Now() override {
    return anchor_ + absl::FromChrono(std::chrono::steady_clock::now() - steady_anchor_);
  }

  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 absl::Time deadline) override {
    const absl::Duration left = deadline - Now();
    if (left <= absl::ZeroDuration()) return;
    cv.wait_for(lock, absl::ToChronoNanoseconds(left));
  }

 private:
  const absl::Time anchor_;
  const std::chrono::steady_clock::time_point steady_anchor_;
};

inline Clock* Clock::Real() {
  static RealClock* const clock = new RealClock();
  return clock;
}

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_CLOCK_H_
