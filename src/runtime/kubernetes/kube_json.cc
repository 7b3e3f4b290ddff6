// Boost.JSON's implementation, compiled into this library once (header-only
// mode: no libboost_json to link).
#include "runtime/kubernetes/kube_json.h"

#include <boost/json/src.hpp>

#include "absl/strings/str_cat.h"

namespace tidal::kube {

absl::StatusOr<json::value> ParseJson(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON: ", ec.message()));
  }
  return v;
}

const json::value* Find(const json::value& v,
                        std::initializer_list<std::string_view> path) {
  const json::value* cur = &v;
  for (std::string_view key : path) {
    const json::object* obj = cur->if_object();
    if (obj == nullptr) return nullptr;
    auto it = obj->find(json::string_view(key.data(), key.size()));
    if (it == obj->end()) return nullptr;
    cur = &it->value();
  }
  return cur;
}

std::string GetString(const json::value& v,
                      std::initializer_list<std::string_view> path,
                      std::string fallback) {
  const json::value* f = Find(v, path);
  if (f == nullptr || !f->is_string()) return fallback;
  return std::string(f->get_string());
}

int64_t GetInt(const json::value& v,
               std::initializer_list<std::string_view> path, int64_t fallback) {
  const json::value* f = Find(v, path);
  if (f == nullptr) return fallback;
  if (f->is_int64()) return f->get_int64();
  if (f->is_uint64()) return static_cast<int64_t>(f->get_uint64());
  if (f->is_double()) return static_cast<int64_t>(f->get_double());
  return fallback;
}

}  // namespace tidal::kube
