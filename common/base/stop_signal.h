// File: common/base/stop_signal.h
//
// Graceful stop on SIGTERM/SIGINT (RELIABILITY 12) for fedsim-server,
// fedsim-client and `fedsim launch`. Install() blocks both signals in the
// calling thread, so every thread started after it inherits the mask, and
// starts a thread that waits for them with sigwait: the first signal runs
// the registered callbacks (on that thread, in registration order); a
// second one ends the process at once with exit code 128 + signal.
//
// Usage (in main, before any other thread starts):
//   StopSignal& stop = StopSignal::Install();
//   int id = stop.Add([&] { server.RequestStop(); });
//   ...
//   stop.Remove(id);  // before what the callback touches is destroyed
//
// Thread safety: all methods are thread-safe; a callback must not call Add
// or Remove.
#ifndef FEDSIM_COMMON_BASE_STOP_SIGNAL_H_
#define FEDSIM_COMMON_BASE_STOP_SIGNAL_H_

#include <functional>
#include <map>
#include <mutex>

namespace fedsim {

class StopSignal {
 public:
  // The process's handler; installs it on the first call.
  static StopSignal& Install();
  // The handler if Install() was called, else null.
  static StopSignal* Get();

  // Registers `fn`; runs it at once (on the caller's thread) if a signal
  // already arrived. Returns an id for Remove.
  int Add(std::function<void()> fn);
  // Unregisters; waits for the callback if it is running.
  void Remove(int id);

  // The first signal received, 0 if none.
  int signal() const;

  // Runs the callbacks as if `signo` had arrived (tests).
  void Trigger(int signo);

 private:
  StopSignal() = default;
  mutable std::mutex mu_;
  std::map<int, std::function<void()>> callbacks_;
  int next_id_ = 1;
  int signal_ = 0;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_STOP_SIGNAL_H_
