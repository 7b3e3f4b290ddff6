#pragma once

// KubernetesRuntime: instances as Pods of a Kubernetes cluster
// (tidald --runtime=kubernetes, docs/kubernetes.md), behind the same Runtime
// interface as local processes.
//
// Each revision of an app (namespace, app, template hash) is a Deployment
// named RevisionName(), created with server-side apply (field manager
// "tidal"), plus a headless Service of the same name so that the
// EndpointSlice controller publishes its Pods' addresses. The Deployment's
// spec.replicas is only ever set through the /scale subresource: Start adds
// one, Stop of a Pod deletes that Pod (with the grace period asked for) and
// then takes one off, so the ReplicaSet does not pick another Pod.
//
// Instances are the Pods (id: the Pod's name), listed and watched per
// Kubernetes namespace (label tidal.dev/managed-by=tidal; resourceVersion,
// bookmarks, listed again on 410 Gone), and, while the Deployment wants more
// Pods than exist, placeholders "<deployment>-pending-<n>" (phase Starting)
// so the controller counts what it asked for. The address of a ready Pod
// comes from its EndpointSlice (status.podIP until the slice has it).
//
// Garbage: a revision whose Deployment wants no Pod and has none left is
// deleted (Deployment and Service, with a uid precondition); at Adopt,
// Deployments with Tidal's labels and 0 replicas go too, and so do Services
// with Tidal's labels whose Deployment is gone (also on becoming acting, and
// after a start whose Deployment was refused). Nothing without Tidal's
// labels is ever listed, changed or deleted.
//
// Thread-safe. Kubernetes calls that change things are serialized (ops_mu_);
// listener calls come from one thread at a time, never under a lock.

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "runtime/kubernetes/kube_client.h"
#include "runtime/runtime.h"

namespace tidal::kube {

struct KubernetesRuntimeOptions {
  // The Kubernetes namespace of a Tidal namespace: namespace_map's entry,
  // else default_namespace (tidald --kube-namespace, --kube-namespace-map).
  std::string default_namespace = "default";
  std::map<std::string, std::string> namespace_map;
  // Each watch asks the API server to end it after this long (it is then
  // started again from the last resourceVersion).
  int64_t watch_timeout_seconds = 300;
  // After a failed list or watch: wait this long, doubling up to
  // max_retry_interval.
  absl::Duration retry_interval = absl::Milliseconds(500);
  absl::Duration max_retry_interval = absl::Seconds(10);
  // How often garbage (revisions with no Pod wanted and none left) is
  // looked for, besides after every stop.
  absl::Duration gc_interval = absl::Seconds(5);
  // Usage reads the metrics API at most this often per namespace
  // (metrics-server itself samples every 15 s by default).
  absl::Duration usage_refresh = absl::Seconds(5);
  // Adopt waits this long for the first list of every namespace.
  absl::Duration adopt_timeout = absl::Seconds(30);
};

class KubernetesRuntime final : public Runtime {
 public:
  // `client` must outlive the runtime.
  KubernetesRuntime(KubeClient* client, KubernetesRuntimeOptions options);
  ~KubernetesRuntime() override;
  KubernetesRuntime(const KubernetesRuntime&) = delete;
  KubernetesRuntime& operator=(const KubernetesRuntime&) = delete;

  absl::StatusOr<tidal::v1::Instance> Start(
      const InstanceRequest& req) override;
  absl::Status Stop(const std::string& instance_id,
                    absl::Duration grace) override;
  std::vector<tidal::v1::Instance> List(const std::string& namespace_ = "",
                                        const std::string& app = "") override;
  void SetListener(Listener listener) override;
  // Lists the Deployments with Tidal's labels in every configured
  // namespace, starts the watches and waits (adopt_timeout) until each has
  // listed its Pods once, then collects garbage.
  absl::Status Adopt() override;
  // CPU and memory of the running Pods, from the resource metrics API
  // (metrics.k8s.io/v1beta1 PodMetrics, served by metrics-server), read at
  // most every usage_refresh per namespace. Each sample is a CPU rate over
  // the sample's window; the rates are summed into CPU seconds per Pod
  // (rate × time since the Pod's previous sample) so the scaler's
  // (seconds delta) / (time delta) gives the rate back. Nothing for a
  // namespace whose metrics cannot be read (no metrics-server: logged once).
  std::vector<InstanceUsage> Usage(const std::string& namespace_ = "",
                                   const std::string& app = "") override;
  // The Pod's log (GET .../pods/NAME/log?container=app); with
  // LogOptions::previous, its previous container's (`previous=true`).
  absl::StatusOr<std::unique_ptr<LogStream>> OpenLogs(
      const std::string& instance_id, const LogOptions& options) override;
  // Pods whose container restarted (Instance.restarts > 0): the kubelet
  // keeps the log of the previous container (`kubectl logs --previous`). A
  // deleted Pod's log is gone with it.
  std::vector<StoppedInstance> StoppedInstances(
      const std::string& namespace_ = "", const std::string& app = "") override;
  // Ends the watches; with stop_instances, scales every revision to zero
  // and deletes its objects.
  void Shutdown(bool stop_instances) override;

  // The Kubernetes namespace a Tidal namespace's instances go to.
  std::string KubeNamespaceOf(const std::string& tidal_namespace) const;

  // Looks for garbage now (tests; a background thread does it every
  // gc_interval). Only while acting.
  void CollectGarbage();

  // A standby of a highly available control plane watches but changes
  // nothing: its garbage collection waits, and it shows the Pods only (no
  // placeholders: what the leader asked of each Deployment is the leader's
  // to know). On by default. Becoming acting reads every Deployment's
  // spec.replicas again (another node scaled them meanwhile) and deletes
  // Tidal's Services whose Deployment is gone, before it returns; if the
  // API cannot be read then, the garbage collector's thread tries again,
  // and until it succeeds no placeholder is shown.
  void SetActing(bool acting);

 private:
  struct Revision {
    std::string kube_ns;
    std::string name;  // the Deployment's and the Service's
    std::string ns, app, hash;
    int64_t revision = 0;
    int32_t desired = 0;  // spec.replicas as last set through /scale
    bool applied = false;
    std::string uid;  // the Deployment's
  };
  struct Pod {
    tidal::v1::Instance inst;  // as the Pod says (host: status.podIP)
    std::string kube_ns;
    std::string deployment;
    std::string uid;
    bool deleting = false;
  };
  struct Watcher;

  static std::string Key(const std::string& kube_ns, const std::string& name) {
    return kube_ns + "/" + name;
  }

  // Every instance as it stands: Pods, then placeholders.
  std::map<std::string, tidal::v1::Instance> ViewLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Compares the view with what was last reported and queues the changes.
  void DiffLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the listener with the queued changes (one thread at a time).
  void Deliver() ABSL_LOCKS_EXCLUDED(mu_);

  void EnsureWatchers(const std::string& kube_ns) ABSL_LOCKS_EXCLUDED(mu_);
  void WatchLoop(Watcher* w);
  void ApplyPodList(const std::string& kube_ns,
                    const std::vector<KubeObject>& items)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ApplyPodEvent(const std::string& kube_ns, const std::string& type,
                     const KubeObject& obj) ABSL_LOCKS_EXCLUDED(mu_);
  void ApplySliceList(const std::string& kube_ns,
                      const std::vector<KubeObject>& items)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ApplySliceEvent(const std::string& kube_ns, const std::string& type,
                       const KubeObject& obj) ABSL_LOCKS_EXCLUDED(mu_);
  void GcLoop();
  // Reads every configured namespace's Deployments with Tidal's labels:
  // revisions_ becomes what the cluster has (spec.replicas as `desired`;
  // a revision whose Deployment is gone is forgotten). While acting, also
  // deletes Tidal's Services that have no Deployment (left by a start whose
  // Deployment was refused, or by a stop between the two deletes).
  absl::Status ReadRevisions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  // ReadRevisions, then the view again (placeholders from what was read,
  // none while the read fails: revisions_stale_). False when it failed
  // (logged).
  bool RefreshRevisions() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The Kubernetes namespaces instances go to (default and mapped).
  std::set<std::string> KubeNamespaces() const;
  absl::Status DeleteRevision(const Revision& rev)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);
  // Deletes a revision's Service (gone already: OK).
  absl::Status DeleteService(const std::string& kube_ns,
                             const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);
  // Moves the revision's spec.replicas by `delta` (read, then written with
  // the version read; a conflict is read again).
  // With `absolute`, sets it to that instead.
  absl::Status ScaleRevision(const std::string& key, int32_t delta,
                             std::optional<int32_t> absolute = std::nullopt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);

  KubeClient* const client_;
  const KubernetesRuntimeOptions options_;

  // Held across the Kubernetes calls of Start, Stop and garbage collection,
  // so a revision's replica count moves one step at a time. Taken before
  // mu_.
  absl::Mutex ops_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  Listener listener_ ABSL_GUARDED_BY(mu_);
  // Revisions by Key(kube_ns, deployment name).
  std::map<std::string, Revision> revisions_ ABSL_GUARDED_BY(mu_);
  // Pods by Key(kube_ns, pod name).
  std::map<std::string, Pod> pods_ ABSL_GUARDED_BY(mu_);
  // Where each instance id lives (its Kubernetes namespace).
  std::map<std::string, std::string> kube_ns_of_ ABSL_GUARDED_BY(mu_);
  // From the EndpointSlices: slice key → (pod key → address).
  std::map<std::string, std::map<std::string, std::string>> slices_
      ABSL_GUARDED_BY(mu_);
  // Pods being stopped by us → the grace asked for.
  std::map<std::string, absl::Duration> stopping_ ABSL_GUARDED_BY(mu_);
  // What the listener was last told, by instance id.
  std::map<std::string, tidal::v1::Instance> reported_ ABSL_GUARDED_BY(mu_);
  std::vector<InstanceChange> pending_ ABSL_GUARDED_BY(mu_);
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  bool gc_started_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> acting_{true};
  // The last ReadRevisions, on becoming acting, failed: what this node knows
  // of the revisions' replicas may be stale, so no placeholder is shown
  // (the controller would stop a placeholder by scaling a real Deployment
  // down) until a read succeeds.
  bool revisions_stale_ ABSL_GUARDED_BY(mu_) = false;

  // Usage: CPU seconds summed per Pod, and when each namespace was read.
  struct PodUsage {
    double cpu_seconds = 0;
    int64_t memory_bytes = 0;
    absl::Time at = absl::InfinitePast();  // the sample's timestamp
  };
  struct NamespaceUsage {
    absl::Time read = absl::InfinitePast();
    bool failed_before = false;
    std::map<std::string, PodUsage> pods;  // by Pod name
  };
  absl::Mutex usage_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::map<std::string, NamespaceUsage> usage_ ABSL_GUARDED_BY(usage_mu_);
  // Notified by Shutdown: watches and waits end.
  absl::Notification stop_;
  std::thread gc_thread_;
};

}  // namespace tidal::kube
