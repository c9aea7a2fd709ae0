#include "common/base/stop_signal.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

namespace fedsim {
namespace {

std::mutex g_install_mu;
StopSignal* g_instance = nullptr;

}  // namespace

StopSignal* StopSignal::Get() {
  std::lock_guard<std::mutex> lock(g_install_mu);
  return g_instance;
}

StopSignal& StopSignal::Install() {
  std::lock_guard<std::mutex> lock(g_install_mu);
  if (g_instance != nullptr) return *g_instance;
  g_instance = new StopSignal();  // lives as long as the process
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  StopSignal* self = g_instance;
  std::thread([self, set] {
    for (;;) {
      int signo = 0;
      if (sigwait(&set, &signo) != 0) continue;
      if (self->signal() != 0) {
        // Second signal: no more waiting.
        std::fprintf(stderr, "second signal %d: exiting now\n", signo);
        std::fflush(nullptr);
        ::_exit(128 + signo);
      }
      // The callbacks may block (a drain); a second signal must still get
      // through, so they run on their own thread.
      std::thread([self, signo] { self->Trigger(signo); }).detach();
    }
  }).detach();
  return *g_instance;
}

int StopSignal::Add(std::function<void()> fn) {
  std::unique_lock<std::mutex> lock(mu_);
  const int id = next_id_++;
  if (signal_ != 0) {
    lock.unlock();
    fn();
    return id;
  }
  callbacks_[id] = std::move(fn);
  return id;
}

void StopSignal::Remove(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  callbacks_.erase(id);
}

int StopSignal::signal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return signal_;
}

void StopSignal::Trigger(int signo) {
  std::lock_guard<std::mutex> lock(mu_);
  if (signal_ != 0) return;
  signal_ = signo;
  for (auto& [id, fn] : callbacks_) fn();
}

}  // namespace fedsim
