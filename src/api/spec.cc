// What is left of spec.h beside decoding (spec_decode.cc), encoding
// (spec_encode.cc) and validation (spec_validate.cc): template hashes and
// the base replica count.
#include "api/spec.h"

#include <cstdint>
#include <cstdio>
#include <string>

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

}  // namespace tidal::spec
