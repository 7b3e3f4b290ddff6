#pragma once

// KubeEmulator: a stand-in for a kube-apiserver (plus the controllers the
// Kubernetes runtime relies on) for tests, since no real one can run here.
// An HTTP/1.1 server (Boost.Beast) on 127.0.0.1, port 0, speaking the real
// wire format for the subset KubeClient uses:
//  - apps/v1 Deployments: server-side apply (PATCH, application/apply-patch+
//    yaml with a JSON body, fieldManager recorded in metadata.managedFields),
//    get, list, delete (propagationPolicy, preconditions), labelSelector;
//    the /scale subresource (autoscaling/v1 Scale, GET and PUT);
//  - core/v1 Pods: get, list, watch, delete, log. The emulator is the
//  Deployment
//    controller too: it keeps spec.replicas Pods per Deployment, named
//    <deployment>-<pod-template-hash>-<5 chars>, Pending and not Ready until
//    a test says otherwise (SetPodReady);
//  - pod logs (plain text, tailLines, follow, previous), container states
//    (SetContainerWaiting: CrashLoopBackOff).
//  - core/v1 Services: server-side apply, get, list, delete (stored only: no
//    cluster IP; the EndpointSlices below do not depend on them);
//  - metrics.k8s.io/v1beta1 PodMetrics (list; SetPodMetrics);
//  - discovery.k8s.io/v1 EndpointSlices (get, list, watch): one per
//    Deployment, as if a Service of the same name selected its Pods (label
//    kubernetes.io/service-name), an endpoint per Pod with an IP, ready or
//    not.
// Lists and watches use one monotonic resourceVersion; watches stream
// newline-delimited watch events (chunked), send BOOKMARK events when asked
// (SendBookmarks) and if allowWatchBookmarks=true, end cleanly at
// timeoutSeconds, and answer a version older than the last Compact() with an
// ERROR event holding a 410 Expired Status. Errors are Status objects (kind,
// apiVersion, status, message, reason, details, code).
//
// Simplifications (docs/kubernetes.md): apply bodies must be JSON; apply
// merges the given labels, annotations and spec keys over the object
// (fields a manager stops setting are not removed); pods are created and
// deleted at once (no grace period); no admission, no defaulting beyond
// spec.replicas = 1.
//
// Every request is recorded (Requests()) for golden files. Fault hooks:
// DropWatches, Throttle (429 + Retry-After), FailNext (e.g. 409 Conflict),
// RotateToken (401 for the old token), GoDown / ComeBack.
//
// Thread-safe: one thread per connection (one request each, then the
// connection closes), one mutex over the state.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidal::testing {

struct RecordedRequest {
  std::string method;
  std::string target;  // path and query, as sent
  std::string content_type;
  std::string accept;
  std::string authorization;
  std::string body;
};

struct KubeEmulatorOptions {
  // The bearer token requests must carry; empty: no authentication.
  std::string token = "emulator-token";
  // Bookmarks every this long on watches that allow them (0: only when
  // SendBookmarks is called).
  absl::Duration bookmark_interval = absl::ZeroDuration();
};

class KubeEmulator {
 public:
  explicit KubeEmulator(KubeEmulatorOptions options = {});
  ~KubeEmulator();
  KubeEmulator(const KubeEmulator&) = delete;
  KubeEmulator& operator=(const KubeEmulator&) = delete;

  // Listens on 127.0.0.1 (a free port).
  absl::Status Start();
  int port() const;
  // "http://127.0.0.1:<port>"
  std::string url() const;

  // Every request so far, in order (also those answered with an error).
  std::vector<RecordedRequest> Requests() const;
  void ClearRequests();

  // The current resourceVersion (the last one given out).
  int64_t resource_version() const;
  // The stored object as JSON, if it exists. `plural`: "deployments",
  // "pods", "endpointslices".
  std::optional<std::string> GetObject(const std::string& plural,
                                       const std::string& ns,
                                       const std::string& name) const;
  // The names of the Pods of a Deployment, sorted.
  std::vector<std::string> PodsOf(const std::string& ns,
                                  const std::string& deployment) const;

  // SetPodReady(true): Running, an IP, the Ready and ContainersReady
  // conditions True; false: those conditions False. NotFound for an unknown
  // pod.
  absl::Status SetPodReady(const std::string& ns, const std::string& pod,
                           bool ready);
  // Every container waiting with `reason` (e.g. "CrashLoopBackOff") after
  // `restart_count` restarts; the pod not Ready. A count above the pod's
  // last one is a restart: the log so far becomes the previous container's
  // (GET .../log?previous=true) and the log starts empty.
  // `last_terminated_reason`: lastState.terminated.reason ("Error",
  // "OOMKilled").
  absl::Status SetContainerWaiting(
      const std::string& ns, const std::string& pod, const std::string& reason,
      int restart_count, const std::string& last_terminated_reason = "Error");
  // The pod's figures in the resource metrics API (metrics.k8s.io/v1beta1
  // PodMetrics, as metrics-server serves them: one container "app", CPU
  // like "250000000n", memory like "20Mi", a 15 s window ending at
  // `timestamp`). NotFound for an unknown pod.
  absl::Status SetPodMetrics(const std::string& ns, const std::string& pod,
                             const std::string& cpu, const std::string& memory,
                             absl::Time timestamp);
  // Adds output to a pod's log (GET .../pods/<name>/log; followed logs get
  // it at once). NotFound for an unknown pod.
  absl::Status AppendPodLog(const std::string& ns, const std::string& pod,
                            const std::string& text);

  // History before now is gone: a watch from an older version gets 410.
  void Compact();
  // A BOOKMARK (the current resourceVersion) on every open watch that
  // allows bookmarks.
  void SendBookmarks();
  // Open watch streams.
  int open_watches() const;

  // Faults.
  // Breaks every open watch off mid-stream (the connection closes without
  // the last chunk).
  void DropWatches();
  // The next `n` requests get 429 Too Many Requests with Retry-After.
  void Throttle(int n, int retry_after_seconds);
  // The next `n` requests get `code` with a Status of `reason` (e.g. 409,
  // "Conflict"); with `only`, the next `n` whose "METHOD target" contains it
  // (e.g. "PATCH /apis/apps/v1/"), the others are answered as usual.
  void FailNext(int n, int code, const std::string& reason,
                const std::string& message, const std::string& only = "");
  // From now on only `token` is accepted (the old one gets 401).
  void RotateToken(const std::string& token);
  // Stops listening and closes every connection (clients get "connection
  // refused"); ComeBack listens on the same port again, state intact.
  void GoDown();
  absl::Status ComeBack();

  struct State;

 private:
  // One connection (a std::shared_ptr<tcp::socket>, kept out of this
  // header): one request, its answer, then close.
  void Serve(std::shared_ptr<void> socket);
  absl::Status Listen(int port);
  void StopListening();

  const KubeEmulatorOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace tidal::testing
