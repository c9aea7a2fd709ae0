// File: tests/testing/fake_clock.h
//
// A Clock whose time moves only when the test says so (Advance). Waits
// (Clock::WaitUntil) return when their condition variable is notified or
// when Advance moves the time past their deadline; nothing ever sleeps on
// the real clock, so a test of deadlines, heartbeats, long polls or
// wall-clock windows runs in milliseconds and the same way every time.
// Header-only; test binaries link fedsim_testing.
//
// Thread safety: thread-safe. Advance takes each waiter's mutex before it
// notifies, so a waiter between its deadline check and its wait cannot
// miss the wake-up.
#ifndef FEDSIM_TESTS_TESTING_FAKE_CLOCK_H_
#define FEDSIM_TESTS_TESTING_FAKE_CLOCK_H_

#include <condition_variable>
#include <iterator>
#include <mutex>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/base/clock.h"

namespace fedsim::test {

class FakeClock : public Clock {
 public:
  // Starts at the real time of its construction (deadlines that tests
  // compute from absl::Now() stay comparable).
  FakeClock() : now_(absl::Now()) {}

  absl::Time Now() override {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }

  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 absl::Time deadline) override {
    Waiter me{&cv, lock.mutex()};
    {
      std::lock_guard<std::mutex> l(mu_);
      if (now_ >= deadline) return;
      waiters_.push_back(me);
      ++waits_;
    }
    cv.wait(lock);
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->cv == me.cv && it->mutex == me.mutex) {
        waiters_.erase(it);
        break;
      }
    }
  }

  // Moves the time on by `d` and wakes every waiter to re-check.
  void Advance(absl::Duration d) {
    std::vector<Waiter> waiters;
    {
      std::lock_guard<std::mutex> l(mu_);
      now_ += d;
      waiters = waiters_;
    }
    for (const Waiter& w : waiters) {
      std::lock_guard<std::mutex> l(*w.mutex);
      w.cv->notify_all();
    }
  }

  // How many times a thread went to wait: a test can wait until the code
  // under test is idle (its count stops changing) before advancing.
  long waits() {
    std::lock_guard<std::mutex> l(mu_);
    return waits_;
  }
  // Threads waiting now.
  std::size_t waiting() {
    std::lock_guard<std::mutex> l(mu_);
    return waiters_.size();
  }

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mutex;
  };

  std::mutex mu_;
  absl::Time now_;
  std::vector<Waiter> waiters_;
  long waits_ = 0;
};

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_FAKE_CLOCK_H_
