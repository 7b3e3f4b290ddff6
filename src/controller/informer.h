#pragma once

// AppInformer: keeps a read-only cache of every App in the store — one List,
// then a Watch from the list's revision — and calls its handler for every
// change of an app's desired state (status-only writes update the cache
// without a call: they are the controller's own). When the watch falls too far
// behind (OutOfRange) it lists again and reports the differences, so no change
// is lost. Thread-safe; the handler runs on the informer's thread.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

class AppInformer {
 public:
  // key is "namespace/name"; app is null when the object was deleted.
  using Handler =
      std::function<void(const std::string& key, const tidal::v1::App* app)>;

  AppInformer(Store* store, Handler handler);
  ~AppInformer();

  // Lists (synchronously: the cache is complete when this returns OK) and
  // starts watching. Start and Stop may alternate (one caller thread): a
  // new Start lists again and reports what changed meanwhile.
  absl::Status Start();
  void Stop();

  std::optional<tidal::v1::App> Get(const std::string& key);
  // Cached and not being deleted (without copying the app).
  bool Live(const std::string& key);
  std::vector<std::string> Keys();
  // Calls `visit` for every cached app, under the cache's lock (`visit`
  // must not call back into the informer).
  void ForEach(const std::function<void(const tidal::v1::App&)>& visit);
  size_t Size();

 private:
  absl::Status Relist();
  absl::Status ListAndWatch();
  void Run();

  // Constant after construction.
  Store* const store_;
  const Handler handler_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, tidal::v1::App> cache_ ABSL_GUARDED_BY(mu_);
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<Watch> watch_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread thread_;
};

// True when two versions of an App differ at most in status (the
// generation, uid, deletion mark, labels and annotations are the same).
bool SameDesiredState(const tidal::v1::App& a, const tidal::v1::App& b);

// "namespace/name" from an app key in the store ("/apps/ns/name").
std::string AppKeyFromStoreKey(const std::string& store_key);

}  // namespace tidal
