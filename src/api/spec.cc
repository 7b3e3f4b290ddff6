// What is left of spec.h beside decoding (spec_decode.cc), encoding
// (spec_encode.cc) and validation (spec_validate.cc): template hashes, the
// base replica count and who owns the replica fields.
#include "api/spec.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace tidal::spec {

namespace pb = google::protobuf;

std::string TemplateHash(const tidal::v1::Template& tmpl) {
  std::string bytes;
  {
    pb::io::StringOutputStream stream(&bytes);
    pb::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    tmpl.SerializeToCodedStream(&coded);
  }
  // FNV-1a 64, folded to 40 bits: 10 hex characters.
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  h = (h ^ (h >> 40)) & ((uint64_t{1} << 40) - 1);
  char buf[16];
  snprintf(buf, sizeof(buf), "%010llx", static_cast<unsigned long long>(h));
  return buf;
}

int32_t BaseReplicas(const tidal::v1::AppSpec& spec) {
  if (spec.has_replicas()) return spec.replicas();
  if (spec.has_scaling() && spec.scaling().has_min_replicas()) {
    return spec.scaling().min_replicas();
  }
  return 1;
}

std::string ReplicaFields(const tidal::v1::AppSpec& spec) {
  std::vector<std::string> parts;
  if (spec.has_replicas())
    parts.push_back(absl::StrCat("replicas=", spec.replicas()));
  if (spec.has_scaling() && spec.scaling().has_min_replicas())
    parts.push_back(
        absl::StrCat("minReplicas=", spec.scaling().min_replicas()));
  if (spec.has_scaling() && spec.scaling().has_max_replicas())
    parts.push_back(
        absl::StrCat("maxReplicas=", spec.scaling().max_replicas()));
  return absl::StrJoin(parts, ",");
}

void MarkScaled(tidal::v1::App* app) {
  auto* annotations = app->mutable_metadata()->mutable_annotations();
  if (annotations->count(kAppliedReplicasAnnotation) == 0)
    (*annotations)[kAppliedReplicasAnnotation] = ReplicaFields(app->spec());
}

void KeepScaledReplicas(const tidal::v1::App& live, tidal::v1::App* desired) {
  desired->mutable_metadata()->mutable_annotations()->erase(
      kAppliedReplicasAnnotation);
  auto it = live.metadata().annotations().find(kAppliedReplicasAnnotation);
  if (it == live.metadata().annotations().end()) return;
  if (ReplicaFields(desired->spec()) != it->second) return;  // the file's
  (*desired->mutable_metadata()->mutable_annotations())[it->first] = it->second;
  auto* spec = desired->mutable_spec();
  const auto& from = live.spec();
  if (from.has_replicas()) {
    spec->set_replicas(from.replicas());
  } else {
    spec->clear_replicas();
  }
  const bool live_min = from.has_scaling() && from.scaling().has_min_replicas();
  const bool live_max = from.has_scaling() && from.scaling().has_max_replicas();
  if (live_min) {
    spec->mutable_scaling()->set_min_replicas(from.scaling().min_replicas());
  } else if (spec->has_scaling()) {
    spec->mutable_scaling()->clear_min_replicas();
  }
  if (live_max) {
    spec->mutable_scaling()->set_max_replicas(from.scaling().max_replicas());
  } else if (spec->has_scaling()) {
    spec->mutable_scaling()->clear_max_replicas();
  }
}

void KeepLiveFields(const tidal::v1::App& live, tidal::v1::App* desired) {
  KeepScaledReplicas(live, desired);
  const auto& from = live.spec().template_().annotations();
  auto it = from.find(kRestartedAtAnnotation);
  if (it == from.end()) return;
  auto* to =
      desired->mutable_spec()->mutable_template_()->mutable_annotations();
  to->insert({it->first, it->second});  // the file's own value wins
}

}  // namespace tidal::spec
