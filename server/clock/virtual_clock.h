// File: server/clock/virtual_clock.h
//
// The virtual clock of the embedded runtime (DESIGN principle 4): a
// discrete-event queue in integer ticks. Integer time makes schedules exact
// (the FedFix paper's code compares floating-point sums; fedsim does not,
// Decision 4). Events at the same tick come out in a fixed order: arrivals
// of client results before deadlines (so a window that ends at t includes a
// result that arrives at t), and arrivals by client id.
//
// Thread safety: a value; not thread-safe.
#ifndef FEDSIM_SERVER_CLOCK_VIRTUAL_CLOCK_H_
#define FEDSIM_SERVER_CLOCK_VIRTUAL_CLOCK_H_

#include <cstdint>
#include <set>
#include <tuple>

#include "common/base/check.h"

namespace fedsim {

// Virtual time in ticks; one time unit is AsyncConfig.ticks_per_unit ticks.
using Tick = std::int64_t;

enum class ClockEventKind : int {
  kArrival = 0,   // a client's result reaches the server
  kDeadline = 1,  // a time the strategy asked to be woken at (FedFix)
};

struct ClockEvent {
  Tick time = 0;
  ClockEventKind kind = ClockEventKind::kArrival;
  std::int64_t client = -1;  // arrivals; -1 for deadlines

  friend bool operator<(const ClockEvent& a, const ClockEvent& b) {
    return std::tie(a.time, a.kind, a.client) < std::tie(b.time, b.kind, b.client);
  }
};

class VirtualClock {
 public:
  // The time of the last event popped (0 before the first).
  Tick now() const { return now_; }
  bool empty() const { return events_.empty(); }
  std::size_t size() const { return events_.size(); }

  // Schedules an event. REQUIRES: time >= now(); no equal event pending
  // (a client has at most one result in flight).
  void Schedule(const ClockEvent& event) {
    FEDSIM_CHECK(event.time >= now_);
    const bool inserted = events_.insert(event).second;
    FEDSIM_CHECK(inserted);
  }

  // The earliest event. REQUIRES: !empty().
  const ClockEvent& Peek() const {
    FEDSIM_CHECK(!events_.empty());
    return *events_.begin();
  }

  // Removes the earliest event and advances now() to its time.
  ClockEvent Pop() {
    FEDSIM_CHECK(!events_.empty());
    ClockEvent e = *events_.begin();
    events_.erase(events_.begin());
    now_ = e.time;
    return e;
  }

 private:
  Tick now_ = 0;
  std::set<ClockEvent> events_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_CLOCK_VIRTUAL_CLOCK_H_
