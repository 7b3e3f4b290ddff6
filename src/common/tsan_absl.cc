// TSan builds only (-DTIDAL_SANITIZE=thread): Debian's Abseil is not built
// with -fsanitize=thread, so ThreadSanitizer cannot see that absl::Mutex,
// absl::CondVar and absl::Notification order memory, and would report every
// field guarded by an absl::Mutex as a race. This file interposes their
// entry points: each calls the real one in libabsl_synchronization (found
// with dlsym(RTLD_NEXT)) and tells TSan about the happens-before edge it
// makes (__tsan_release before an unlock or a wait, __tsan_acquire after a
// lock or a wake-up, and before a waiter's Condition is evaluated). Definitions
// in the executable take precedence over the shared library's for every caller,
// Abseil's own and gRPC's included.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#define TIDAL_STR2(x) #x
#define TIDAL_STR(x) TIDAL_STR2(x)

namespace {

// "_ZN4absl<len><inline namespace>": the mangled prefix of absl's symbols.
std::string Mangled(const char* prefix, const char* rest) {
  const char* ns = TIDAL_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return std::string(prefix) + "4absl" + std::to_string(std::strlen(ns)) + ns +
         rest;
}

template <typename F>
F Real(const char* prefix, const char* rest) {
  const std::string name = Mangled(prefix, rest);
  void* f = dlsym(RTLD_NEXT, name.c_str());
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl: %s not found: %s\n", name.c_str(),
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN
namespace {

// Abseil evaluates a waiter's Condition with the mutex held, but inside its
// own (uninstrumented) code: after re-taking the mutex in the waiting thread,
// or in the thread that is unlocking. The wrapper tells TSan the mutex was
// acquired before the condition reads the guarded state, and released after.
struct TsanCondition {
  const Condition* cond;
  Mutex* mu;
  static bool Eval(TsanCondition* c) {
    __tsan_acquire(c->mu);
    const bool ready = c->cond->Eval();
    // A false condition makes the waiter give the mutex up inside Abseil:
    // what the condition read must come before the next holder's writes.
    __tsan_release(c->mu);
    return ready;
  }
};

}  // namespace

#define TIDAL_REAL(type, prefix, rest) \
  static const auto real = Real<type>(prefix, rest)

void Mutex::Lock() {
  TIDAL_REAL(void (*)(Mutex*), "_ZN", "5Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}
void Mutex::ReaderLock() {
  TIDAL_REAL(void (*)(Mutex*), "_ZN", "5Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}
bool Mutex::TryLock() {
  TIDAL_REAL(bool (*)(Mutex*), "_ZN", "5Mutex7TryLockEv");
  bool ok = real(this);
  if (ok) __tsan_acquire(this);
  return ok;
}
bool Mutex::ReaderTryLock() {
  TIDAL_REAL(bool (*)(Mutex*), "_ZN", "5Mutex13ReaderTryLockEv");
  bool ok = real(this);
  if (ok) __tsan_acquire(this);
  return ok;
}
void Mutex::Unlock() {
  TIDAL_REAL(void (*)(Mutex*), "_ZN", "5Mutex6UnlockEv");
  // Unlocking evaluates waiters' Conditions, built before they waited.
  __tsan_acquire(this);
  __tsan_release(this);
  real(this);
}
void Mutex::ReaderUnlock() {
  TIDAL_REAL(void (*)(Mutex*), "_ZN", "5Mutex12ReaderUnlockEv");
  __tsan_acquire(this);
  __tsan_release(this);
  real(this);
}
void Mutex::LockWhen(const Condition& c) {
  TIDAL_REAL(void (*)(Mutex*, const Condition&), "_ZN",
             "5Mutex8LockWhenERKNS0_9ConditionE");
  TsanCondition tc{&c, this};
  const Condition wrapped(&TsanCondition::Eval, &tc);
  __tsan_release(this);  // the unlocker reads `wrapped`
  real(this, wrapped);
  __tsan_acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& c) {
  TIDAL_REAL(void (*)(Mutex*, const Condition&), "_ZN",
             "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  TsanCondition tc{&c, this};
  const Condition wrapped(&TsanCondition::Eval, &tc);
  __tsan_release(this);  // the unlocker reads `wrapped`
  real(this, wrapped);
  __tsan_acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& c, Duration d) {
  TIDAL_REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN",
             "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  TsanCondition tc{&c, this};
  const Condition wrapped(&TsanCondition::Eval, &tc);
  __tsan_release(this);  // the unlocker reads `wrapped`
  bool ok = real(this, wrapped, d);
  __tsan_acquire(this);
  return ok;
}
bool Mutex::LockWhenWithDeadline(const Condition& c, Time t) {
  TIDAL_REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN",
             "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  TsanCondition tc{&c, this};
  const Condition wrapped(&TsanCondition::Eval, &tc);
  __tsan_release(this);  // the unlocker reads `wrapped`
  bool ok = real(this, wrapped, t);
  __tsan_acquire(this);
  return ok;
}
void Mutex::Await(const Condition& c) {
  TIDAL_REAL(void (*)(Mutex*, const Condition&), "_ZN",
             "5Mutex5AwaitERKNS0_9ConditionE");
  TsanCondition tc{&c, this};
  const Condition wrapped(&TsanCondition::Eval, &tc);
  __tsan_release(this);  // after `wrapped` is built: the unlocker reads it
  real(this, wrapped);
  __tsan_acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& c, Duration d) {
  TIDAL_REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN",
             "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  TsanCondition tc{&c, this};
  const Condition wrapped(&TsanCondition::Eval, &tc);
  __tsan_release(this);  // after `wrapped` is built: the unlocker reads it
  bool ok = real(this, wrapped, d);
  __tsan_acquire(this);
  return ok;
}
bool Mutex::AwaitWithDeadline(const Condition& c, Time t) {
  TIDAL_REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN",
             "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  TsanCondition tc{&c, this};
  const Condition wrapped(&TsanCondition::Eval, &tc);
  __tsan_release(this);  // after `wrapped` is built: the unlocker reads it
  bool ok = real(this, wrapped, t);
  __tsan_acquire(this);
  return ok;
}

void CondVar::Wait(Mutex* mu) {
  TIDAL_REAL(void (*)(CondVar*, Mutex*), "_ZN", "7CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration d) {
  TIDAL_REAL(bool (*)(CondVar*, Mutex*, Duration), "_ZN",
             "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  bool ok = real(this, mu, d);
  __tsan_acquire(mu);
  return ok;
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time t) {
  TIDAL_REAL(bool (*)(CondVar*, Mutex*, Time), "_ZN",
             "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  bool ok = real(this, mu, t);
  __tsan_acquire(mu);
  return ok;
}

void Notification::Notify() {
  TIDAL_REAL(void (*)(Notification*), "_ZN", "12Notification6NotifyEv");
  __tsan_release(this);
  real(this);
}
void Notification::WaitForNotification() const {
  TIDAL_REAL(void (*)(const Notification*), "_ZNK",
             "12Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}
bool Notification::WaitForNotificationWithTimeout(Duration d) const {
  TIDAL_REAL(bool (*)(const Notification*, Duration), "_ZNK",
             "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  bool ok = real(this, d);
  if (ok) __tsan_acquire(const_cast<Notification*>(this));
  return ok;
}

#undef TIDAL_REAL

ABSL_NAMESPACE_END
}  // namespace absl
