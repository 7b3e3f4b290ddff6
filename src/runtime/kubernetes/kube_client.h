#pragma once

// KubeClient: a small client of the Kubernetes REST API over libcurl, what
// the Kubernetes runtime needs and no more: get, list, watch, server-side
// apply, the /scale subresource, delete and pod logs. Objects travel as JSON
// text (KubeObject::json); the few fields a caller always needs (name,
// namespace, uid, resourceVersion) are lifted out. JSON is parsed in the .cc
// files only (Boost.JSON, kube_json.h).
//
// Errors: absl::Status naming the verb, the path, the HTTP status and the
// API's message (its Status object). Codes:
//   404 NotFound; 409 AlreadyExists (reason AlreadyExists) or Aborted
//   (Conflict: a stale resourceVersion, a failed precondition, an apply
//   conflict); 410 Gone OutOfRange (IsGone: list again); 400/422
//   InvalidArgument; 401 Unauthenticated; 403 PermissionDenied; 429/5xx and
//   connection failures Unavailable (after the retries below).
// Retries inside one call: 429 and 503 wait for Retry-After (bounded by
// max_retry_after; 1 s when absent) up to max_retries times; a 401 re-reads
// the token (TokenSource::Refresh) and retries once.
//
// Thread-safe: each call uses its own curl handle.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/kubernetes/kube_config.h"

namespace tidal::kube {

// Where a kind of object lives: "/apis/apps/v1" + "deployments".
struct Resource {
  std::string api_prefix;   // "/api/v1" or "/apis/<group>/<version>"
  std::string plural;       // "deployments"
  std::string api_version;  // "apps/v1"
  std::string kind;         // "Deployment"
};

inline const Resource kDeployments{"/apis/apps/v1", "deployments", "apps/v1",
                                   "Deployment"};
inline const Resource kPods{"/api/v1", "pods", "v1", "Pod"};
inline const Resource kServices{"/api/v1", "services", "v1", "Service"};
inline const Resource kEndpointSlices{"/apis/discovery.k8s.io/v1",
                                      "endpointslices", "discovery.k8s.io/v1",
                                      "EndpointSlice"};

// The path of a namespaced object (name empty: the collection), with an
// optional subresource ("scale", "log").
std::string ObjectPath(const Resource& r, std::string_view ns,
                       std::string_view name = "",
                       std::string_view subresource = "");

// One object as the API returned it.
struct KubeObject {
  std::string json;  // the whole object
  std::string name;
  std::string namespace_;
  std::string uid;
  std::string resource_version;
  // Apply: the request created the object (201 Created).
  bool created = false;
};

struct KubeList {
  std::vector<KubeObject> items;
  // The list's metadata.resourceVersion: where a watch starts.
  std::string resource_version;
  // metadata.continue: more items to come (ListOptions::continue_token).
  std::string continue_token;
};

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  // "" (the newest), "0" (any) or a resourceVersion (not older than).
  std::string resource_version;
  int64_t limit = 0;
  std::string continue_token;
};

struct WatchEvent {
  // ADDED, MODIFIED, DELETED or BOOKMARK (ERROR ends the watch).
  std::string type;
  KubeObject object;
};

struct WatchOptions {
  std::string label_selector;
  std::string field_selector;
  // Start after this version (from a list); required.
  std::string resource_version;
  bool allow_watch_bookmarks = true;
  // The server ends the watch after this long (0: its default).
  int64_t timeout_seconds = 0;
  // Checked every few hundred milliseconds while the stream is idle (and
  // after every event): true ends the watch.
  std::function<bool()> cancelled;
};

// How a watch ended when it did not fail.
struct WatchResult {
  // The last resourceVersion seen (an event's or a bookmark's; the start
  // version when none came): watch again from here.
  std::string resource_version;
  int64_t events = 0;  // events delivered, bookmarks included
  // The connection broke off mid-stream (not a clean end of the stream):
  // nothing is lost, watch again from resource_version.
  bool dropped = false;
  bool cancelled = false;  // ended by WatchOptions::cancelled or the handler
};

struct ApplyOptions {
  std::string field_manager = "tidal";
  // Take over fields another manager owns instead of a 409 conflict.
  bool force = true;
};

// autoscaling/v1 Scale of a Deployment.
struct Scale {
  int32_t spec_replicas = 0;
  int32_t status_replicas = 0;
  std::string selector;  // status.selector: "a=b,c=d"
  std::string resource_version;
};

struct DeleteOptions {
  // Background, Foreground or Orphan; empty: the server's default.
  std::string propagation_policy = "Background";
  // Preconditions: the delete fails with a 409 (Aborted) when the object's
  // uid / resourceVersion differ.
  std::string precondition_uid;
  std::string precondition_resource_version;
  std::optional<int64_t> grace_period_seconds;
};

struct PodLogOptions {
  std::string container;
  bool follow = false;
  int64_t tail_lines = 0;  // 0: all
  // The log of the container's previous run (one that terminated and was
  // restarted): `previous=true`. The API server answers 400 when there is
  // none.
  bool previous = false;
  // As WatchOptions::cancelled.
  std::function<bool()> cancelled;
};

struct KubeClientOptions {
  // Bound on one request that is not a stream (watch, followed logs).
  absl::Duration request_timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(5);
  // 429/503 retries.
  int max_retries = 5;
  absl::Duration max_retry_after = absl::Seconds(10);
  std::string user_agent = "tidal";
};

// True for the status of a 410 Gone (a watch or list from a compacted
// resourceVersion): the caller lists again.
bool IsGone(const absl::Status& status);

// Thread-safe.
class KubeClient {
 public:
  explicit KubeClient(KubeConfig config, KubeClientOptions options = {});
  ~KubeClient();
  KubeClient(const KubeClient&) = delete;
  KubeClient& operator=(const KubeClient&) = delete;

  const KubeConfig& config() const { return config_; }

  absl::StatusOr<KubeObject> Get(const Resource& r, const std::string& ns,
                                 const std::string& name);

  absl::StatusOr<KubeList> List(const Resource& r, const std::string& ns,
                                const ListOptions& options = {});

  // Streams watch events to `on_event` (from the calling thread) until the
  // server ends the stream (timeoutSeconds), it breaks off, or `on_event`
  // returns false / options.cancelled() says so. A 410 Gone (an HTTP 410 or
  // an ERROR event with code 410) returns OutOfRange (IsGone); an ERROR
  // event with another code returns its error.
  absl::StatusOr<WatchResult> Watch(
      const Resource& r, const std::string& ns, const WatchOptions& options,
      const std::function<bool(const WatchEvent&)>& on_event);

  // Server-side apply: PATCH with Content-Type application/apply-patch+yaml
  // (the manifest is JSON, which is YAML), ?fieldManager=..&force=true.
  // Creates the object or updates the fields the manager sets. The manifest
  // must carry apiVersion, kind and metadata.name.
  absl::StatusOr<KubeObject> Apply(const Resource& r, const std::string& ns,
                                   const std::string& name,
                                   const std::string& manifest_json,
                                   const ApplyOptions& options = {});

  // The /scale subresource (autoscaling/v1 Scale).
  absl::StatusOr<Scale> GetScale(const Resource& r, const std::string& ns,
                                 const std::string& name);
  // PUT /scale with spec.replicas; with resource_version set, a 409 (Aborted)
  // when the object changed since.
  absl::StatusOr<Scale> UpdateScale(const Resource& r, const std::string& ns,
                                    const std::string& name, int32_t replicas,
                                    const std::string& resource_version = "");

  absl::Status Delete(const Resource& r, const std::string& ns,
                      const std::string& name,
                      const DeleteOptions& options = {});

  // GET .../pods/<name>/log: the text goes to `on_data` as it comes (return
  // false to stop). Ends when the log ends (without follow: what is there),
  // the pod's stream ends, or options.cancelled() says so.
  absl::Status PodLogs(const std::string& ns, const std::string& pod,
                       const PodLogOptions& options,
                       const std::function<bool(std::string_view)>& on_data);

 private:
  struct Request;
  struct Response;
  absl::StatusOr<Response> Do(Request& req);
  absl::StatusOr<Response> DoOnce(Request& req, const Credential& cred);

  // Constant after construction.
  const KubeConfig config_;
  const KubeClientOptions options_;
  TokenSource tokens_;
};

}  // namespace tidal::kube
