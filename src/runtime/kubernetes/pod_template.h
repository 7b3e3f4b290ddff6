#pragma once

// How the Kubernetes runtime writes a revision of an app as Kubernetes
// objects, and reads a Pod back as an Instance (docs/kubernetes.md,
// "Mapping"). Pure functions: no client, no state. JSON text in and out
// (Boost.JSON stays in the .cc).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/runtime.h"
#include "tidal/v1/app.pb.h"

namespace tidal::kube {

// Labels on every object the runtime makes (and the selector its lists and
// watches use: nothing without them is ever touched).
inline constexpr char kLabelManagedBy[] = "tidal.dev/managed-by";
inline constexpr char kManagedBy[] = "tidal";
inline constexpr char kLabelNamespace[] = "tidal.dev/namespace";
inline constexpr char kLabelApp[] = "tidal.dev/app";
inline constexpr char kLabelTemplateHash[] = "tidal.dev/template-hash";
inline constexpr char kLabelRevision[] = "tidal.dev/revision";
inline constexpr char kAnnotationOwner[] = "tidal.dev/owner";  // "ns/app"
// "tidal.dev/managed-by=tidal"
std::string ManagedSelector();

// The container port when the template has none (Knative's and Cloud Run's
// default); the container gets it as $PORT like a local instance.
inline constexpr int32_t kDefaultPort = 8080;

// The name of a revision's Deployment and of its headless Service: the app's
// name (cut to fit) and 10 hex characters of a hash of the Tidal namespace,
// the app and the template hash, so revisions of apps of different Tidal
// namespaces sharing one Kubernetes namespace never meet. A DNS-1035 label
// (at most 63 characters, starts with a letter), as a Service name must be.
std::string RevisionName(const std::string& ns, const std::string& app,
                         const std::string& template_hash);

// The Deployment (apps/v1) of a revision, for server-side apply: labels,
// the owner annotation, the selector and the Pod template; no spec.replicas
// (only the /scale subresource sets it). InvalidArgument naming the field
// when the template cannot be a Pod (spec.template.image missing).
absl::StatusOr<std::string> DeploymentManifest(const InstanceRequest& req,
                                               const std::string& name);

// The headless Service (v1) selecting the revision's Pods, so that the
// EndpointSlice controller publishes their addresses.
std::string ServiceManifest(const InstanceRequest& req,
                            const std::string& name);

// What a Pod says about the instance it is: id (the Pod's name), app,
// revision, phase (Pending → Starting, Running, deletionTimestamp →
// Terminating, a container waiting in CrashLoopBackOff → CrashLoopBackOff,
// one that cannot start (ImagePullBackOff, ErrImagePull, InvalidImageName,
// CreateContainerConfigError, CreateContainerError) or a Pod that Failed →
// Failed), ready (the Ready condition), host (status.podIP), port, restarts,
// reason (the waiting or last termination reason, e.g. OOMKilled), start and
// ready times. InvalidArgument for text that is not a Pod of the runtime's.
struct PodView {
  tidal::v1::Instance instance;
  std::string deployment;  // the revision's Deployment (from the labels)
  std::string uid;
  bool deleting = false;  // metadata.deletionTimestamp set
};
absl::StatusOr<PodView> PodToInstance(const std::string& pod_json);

}  // namespace tidal::kube
