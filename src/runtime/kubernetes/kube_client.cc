#include "runtime/kubernetes/kube_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "runtime/kubernetes/kube_json.h"

namespace tidal::kube {
namespace {

// The payload of a status that stands for a 410 Gone.
constexpr char kGonePayload[] = "tidal.dev/kube-gone";

absl::string_view AV(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Escape(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  std::string out = e != nullptr ? e : "";
  curl_free(e);
  return out;
}

KubeObject ToObject(const json::value& v) {
  KubeObject o;
  o.json = json::serialize(v);
  o.name = GetString(v, {"metadata", "name"});
  o.namespace_ = GetString(v, {"metadata", "namespace"});
  o.uid = GetString(v, {"metadata", "uid"});
  o.resource_version = GetString(v, {"metadata", "resourceVersion"});
  return o;
}

absl::Status CodeFor(long http, const std::string& reason, std::string msg) {
  absl::Status s;
  switch (http) {
    case 400:
    case 422:
      return absl::InvalidArgumentError(msg);
    case 401:
      return absl::UnauthenticatedError(msg);
    case 403:
      return absl::PermissionDeniedError(msg);
    case 404:
      return absl::NotFoundError(msg);
    case 409:
      if (reason == "AlreadyExists") return absl::AlreadyExistsError(msg);
      return absl::AbortedError(msg);
    case 410:
      s = absl::OutOfRangeError(msg);
      s.SetPayload(kGonePayload, absl::Cord("1"));
      return s;
    case 504:
      return absl::DeadlineExceededError(msg);
    default:
      if (http == 429 || http >= 500) return absl::UnavailableError(msg);
      return absl::UnknownError(msg);
  }
}

const char* ReasonPhrase(long code) {
  switch (code) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "";
  }
}

// The error of a non-2xx answer: "<VERB> <path>: HTTP 409 Conflict: <the
// Status object's message>".
absl::Status HttpError(const std::string& method, const std::string& path,
                       long code, const std::string& body) {
  std::string message;
  std::string reason;
  absl::StatusOr<json::value> v = ParseJson(body);
  if (v.ok() && GetString(*v, {"kind"}) == "Status") {
    message = GetString(*v, {"message"});
    reason = GetString(*v, {"reason"});
  } else {
    message = body.substr(0, 200);
  }
  std::string text =
      absl::StrCat(method, " ", path, ": HTTP ", code, " ", ReasonPhrase(code));
  if (!reason.empty()) absl::StrAppend(&text, " (", reason, ")");
  if (!message.empty()) absl::StrAppend(&text, ": ", message);
  return CodeFor(code, reason, text);
}

}  // namespace

bool IsGone(const absl::Status& status) {
  return absl::IsOutOfRange(status) &&
         status.GetPayload(kGonePayload).has_value();
}

std::string ObjectPath(const Resource& r, std::string_view ns,
                       std::string_view name, std::string_view subresource) {
  std::string path = r.api_prefix;
  if (!ns.empty()) absl::StrAppend(&path, "/namespaces/", AV(ns));
  absl::StrAppend(&path, "/", r.plural);
  if (!name.empty()) absl::StrAppend(&path, "/", AV(name));
  if (!subresource.empty()) absl::StrAppend(&path, "/", AV(subresource));
  return path;
}

struct KubeClient::Request {
  std::string method;  // GET, PUT, PATCH, DELETE
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  std::string content_type;
  std::string body;
  std::string accept = "application/json";
  // Set for streams (watch, logs): 2xx bodies go here as they come instead
  // of into Response::body; return false to stop. No overall timeout.
  std::function<bool(std::string_view)> on_data;
  std::function<bool()> cancelled;

  std::string Target() const {
    std::string t = path;
    for (size_t i = 0; i < query.size(); ++i) {
      absl::StrAppend(&t, i == 0 ? "?" : "&", query[i].first, "=",
                      Escape(query[i].second));
    }
    return t;
  }
};

struct KubeClient::Response {
  long code = 0;
  std::string body;
  absl::Duration retry_after = absl::ZeroDuration();
  bool has_retry_after = false;
  bool streamed = false;        // some 2xx body went to on_data
  bool stopped = false;         // on_data returned false
  bool cancelled = false;       // Request::cancelled said so
  bool dropped = false;         // the stream broke off after it began
  std::string transport_error;  // curl's, when the stream broke off
};

KubeClient::KubeClient(KubeConfig config, KubeClientOptions options)
    : config_(std::move(config)), options_(options), tokens_(config_) {
  InitCurlOnce();
}

KubeClient::~KubeClient() = default;

namespace {

struct Transfer {
  CURL* curl = nullptr;
  const std::function<bool(std::string_view)>* on_data = nullptr;
  const std::function<bool()>* cancelled = nullptr;
  std::string body;
  bool streaming = false;  // decided at the first byte of the body
  bool decided = false;
  bool streamed = false;
  bool stopped = false;
  bool was_cancelled = false;
  std::string retry_after;
};

size_t OnWrite(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t len = size * n;
  if (!t->decided) {
    t->decided = true;
    long code = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
    t->streaming =
        t->on_data != nullptr && *t->on_data && code >= 200 && code < 300;
  }
  if (!t->streaming) {
    t->body.append(data, len);
    return len;
  }
  t->streamed = true;
  if (!(*t->on_data)(std::string_view(data, len))) {
    t->stopped = true;
    return 0;  // ends the transfer (CURLE_WRITE_ERROR)
  }
  if (t->cancelled != nullptr && *t->cancelled && (*t->cancelled)()) {
    t->was_cancelled = true;
    return 0;
  }
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  std::string_view line(data, size * n);
  if (absl::StartsWithIgnoreCase(AV(line), "retry-after:")) {
    t->retry_after = std::string(
        absl::StripAsciiWhitespace(AV(line.substr(strlen("retry-after:")))));
  }
  return size * n;
}

int OnProgress(void* userp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(userp);
  if (t->cancelled != nullptr && *t->cancelled && (*t->cancelled)()) {
    t->was_cancelled = true;
    return 1;
  }
  return 0;
}

}  // namespace

absl::StatusOr<KubeClient::Response> KubeClient::DoOnce(
    Request& req, const Credential& cred) {
  const std::string& token = cred.token;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  const std::string url = config_.server + req.Target();
  Transfer t;
  t.curl = curl;
  t.on_data = &req.on_data;
  t.cancelled = &req.cancelled;

  struct curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("Accept: " + req.accept).c_str());
  if (!req.content_type.empty()) {
    headers = curl_slist_append(headers,
                                ("Content-Type: " + req.content_type).c_str());
  }
  if (!token.empty()) {
    headers =
        curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
  }
  // No "Expect: 100-continue" round trip before bodies.
  headers = curl_slist_append(headers, "Expect:");

  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  if (req.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(req.body.size()));
  } else {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(
      curl, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  if (!req.on_data) {
    curl_easy_setopt(
        curl, CURLOPT_TIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(options_.request_timeout)));
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  if (req.cancelled) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  }
  // Trust and client identity.
  if (config_.insecure_skip_tls_verify) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  struct curl_blob ca_blob, cert_blob, key_blob;
  if (!config_.ca_data.empty()) {
    ca_blob = {const_cast<char*>(config_.ca_data.data()),
               config_.ca_data.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca_blob);
  } else if (!config_.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, config_.ca_file.c_str());
  }
  // An exec plugin's certificate and key (always both) over the config's.
  const std::string& cert_pem = cred.client_cert_pem.empty()
                                    ? config_.client_cert_data
                                    : cred.client_cert_pem;
  const std::string& key_pem = cred.client_key_pem.empty()
                                   ? config_.client_key_data
                                   : cred.client_key_pem;
  if (!cert_pem.empty()) {
    cert_blob = {const_cast<char*>(cert_pem.data()), cert_pem.size(),
                 CURL_BLOB_NOCOPY};
    curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert_blob);
    curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!config_.client_cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
  }
  if (!key_pem.empty()) {
    key_blob = {const_cast<char*>(key_pem.data()), key_pem.size(),
                CURL_BLOB_NOCOPY};
    curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key_blob);
    curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!config_.client_key_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLKEY, config_.client_key_file.c_str());
  }

  CURLcode rc = curl_easy_perform(curl);
  Response resp;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.code);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);

  resp.body = std::move(t.body);
  resp.streamed = t.streamed;
  resp.stopped = t.stopped;
  resp.cancelled = t.was_cancelled;
  if (!t.retry_after.empty()) {
    int64_t secs = 0;
    if (absl::SimpleAtoi(t.retry_after, &secs) && secs >= 0) {
      resp.has_retry_after = true;
      resp.retry_after = absl::Seconds(secs);
    }
  }
  if (rc != CURLE_OK) {
    if (resp.stopped || resp.cancelled) return resp;
    // A 2xx stream that began and then broke off: the caller resumes.
    if (resp.code >= 200 && resp.code < 300 && req.on_data) {
      resp.dropped = true;
      resp.transport_error = curl_easy_strerror(rc);
      return resp;
    }
    return absl::UnavailableError(absl::StrCat(req.method, " ", req.path, " (",
                                               config_.server,
                                               "): ", curl_easy_strerror(rc)));
  }
  return resp;
}

absl::StatusOr<KubeClient::Response> KubeClient::Do(Request& req) {
  static auto logger = GetLogger("kube");
  bool refreshed = false;
  int retries = 0;
  for (;;) {
    ASSIGN_OR_RETURN(Credential cred, tokens_.Get());
    ASSIGN_OR_RETURN(Response resp, DoOnce(req, cred));
    if (resp.code >= 200 && resp.code < 300) return resp;
    if (resp.code == 401 && !refreshed) {
      refreshed = true;
      // A rotated token (the kubelet rewrites the file) or an expired
      // plugin credential: read it again (run the plugin again) and retry
      // once, whatever its mtime or expiry says.
      tokens_.Refresh();
      logger->info("{} {}: 401 Unauthorized, credential renewed, retrying",
                   req.method, req.path);
      continue;
    }
    if ((resp.code == 429 || resp.code == 503) &&
        retries < options_.max_retries) {
      ++retries;
      absl::Duration wait =
          resp.has_retry_after ? resp.retry_after : absl::Seconds(1);
      wait = std::min(wait, options_.max_retry_after);
      logger->info("{} {}: HTTP {}, retrying in {} ({}/{})", req.method,
                   req.path, resp.code, absl::FormatDuration(wait), retries,
                   options_.max_retries);
      const absl::Time until = absl::Now() + wait;
      while (absl::Now() < until) {
        if (req.cancelled && req.cancelled()) {
          return absl::CancelledError(
              absl::StrCat(req.method, " ", req.path, ": cancelled"));
        }
        absl::SleepFor(std::min(until - absl::Now(), absl::Milliseconds(50)));
      }
      continue;
    }
    return HttpError(req.method, req.Target(), resp.code, resp.body);
  }
}

absl::StatusOr<KubeObject> KubeClient::Get(const Resource& r,
                                           const std::string& ns,
                                           const std::string& name) {
  Request req;
  req.method = "GET";
  req.path = ObjectPath(r, ns, name);
  ASSIGN_OR_RETURN(Response resp, Do(req));
  ASSIGN_OR_RETURN(json::value v, ParseJson(resp.body));
  return ToObject(v);
}

absl::StatusOr<KubeList> KubeClient::List(const Resource& r,
                                          const std::string& ns,
                                          const ListOptions& options) {
  Request req;
  req.method = "GET";
  req.path = ObjectPath(r, ns);
  if (!options.label_selector.empty()) {
    req.query.emplace_back("labelSelector", options.label_selector);
  }
  if (!options.field_selector.empty()) {
    req.query.emplace_back("fieldSelector", options.field_selector);
  }
  if (!options.resource_version.empty()) {
    req.query.emplace_back("resourceVersion", options.resource_version);
  }
  if (options.limit > 0) {
    req.query.emplace_back("limit", absl::StrCat(options.limit));
  }
  if (!options.continue_token.empty()) {
    req.query.emplace_back("continue", options.continue_token);
  }
  ASSIGN_OR_RETURN(Response resp, Do(req));
  ASSIGN_OR_RETURN(json::value v, ParseJson(resp.body));
  KubeList list;
  list.resource_version = GetString(v, {"metadata", "resourceVersion"});
  list.continue_token = GetString(v, {"metadata", "continue"});
  const json::value* items = Find(v, {"items"});
  if (items != nullptr && items->is_array()) {
    for (const json::value& item : items->get_array()) {
      list.items.push_back(ToObject(item));
    }
  }
  return list;
}

absl::StatusOr<WatchResult> KubeClient::Watch(
    const Resource& r, const std::string& ns, const WatchOptions& options,
    const std::function<bool(const WatchEvent&)>& on_event) {
  Request req;
  req.method = "GET";
  req.path = ObjectPath(r, ns);
  req.query.emplace_back("watch", "true");
  if (!options.label_selector.empty()) {
    req.query.emplace_back("labelSelector", options.label_selector);
  }
  if (!options.field_selector.empty()) {
    req.query.emplace_back("fieldSelector", options.field_selector);
  }
  if (options.allow_watch_bookmarks) {
    req.query.emplace_back("allowWatchBookmarks", "true");
  }
  req.query.emplace_back("resourceVersion", options.resource_version);
  if (options.timeout_seconds > 0) {
    req.query.emplace_back("timeoutSeconds",
                           absl::StrCat(options.timeout_seconds));
  }
  req.cancelled = options.cancelled;

  WatchResult result;
  result.resource_version = options.resource_version;
  absl::Status event_error;  // an ERROR event, or a line that is not JSON
  std::string pending;       // a line not yet complete
  req.on_data = [&](std::string_view data) {
    pending.append(data);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos;
         start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      if (absl::StripAsciiWhitespace(AV(line)).empty()) continue;
      absl::StatusOr<json::value> v = ParseJson(line);
      if (!v.ok()) {
        event_error = absl::InternalError(absl::StrCat(
            "GET ", req.Target(), ": watch event: ", v.status().message()));
        return false;
      }
      WatchEvent ev;
      ev.type = GetString(*v, {"type"});
      const json::value* obj = Find(*v, {"object"});
      if (ev.type == "ERROR") {
        const int64_t code = obj ? GetInt(*obj, {"code"}) : 0;
        event_error =
            HttpError("GET", req.Target(), code,
                      obj ? json::serialize(*obj) : std::string("{}"));
        return false;
      }
      if (obj != nullptr) ev.object = ToObject(*obj);
      if (!ev.object.resource_version.empty()) {
        result.resource_version = ev.object.resource_version;
      }
      ++result.events;
      if (!on_event(ev)) {
        result.cancelled = true;
        return false;
      }
    }
    pending.erase(0, start);
    return true;
  };
  ASSIGN_OR_RETURN(Response resp, Do(req));
  if (!event_error.ok()) return event_error;
  if (resp.cancelled) result.cancelled = true;
  if (resp.dropped) {
    static auto logger = GetLogger("kube");
    result.dropped = true;
    logger->info("GET {}: watch broke off at resourceVersion {} ({})", req.path,
                 result.resource_version, resp.transport_error);
  }
  return result;
}

absl::StatusOr<KubeObject> KubeClient::Apply(const Resource& r,
                                             const std::string& ns,
                                             const std::string& name,
                                             const std::string& manifest_json,
                                             const ApplyOptions& options) {
  absl::StatusOr<json::value> manifest = ParseJson(manifest_json);
  if (!manifest.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("apply ", r.kind, " ", ns, "/", name, ": ",
                     manifest.status().message()));
  }
  if (GetString(*manifest, {"metadata", "name"}) != name ||
      GetString(*manifest, {"apiVersion"}).empty() ||
      GetString(*manifest, {"kind"}).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("apply ", r.kind, " ", ns, "/", name,
                     ": the manifest needs apiVersion, kind and metadata.name "
                     "= \"",
                     name, "\""));
  }
  Request req;
  req.method = "PATCH";
  req.path = ObjectPath(r, ns, name);
  req.query.emplace_back("fieldManager", options.field_manager);
  if (options.force) req.query.emplace_back("force", "true");
  req.content_type = "application/apply-patch+yaml";
  req.body = manifest_json;
  ASSIGN_OR_RETURN(Response resp, Do(req));
  ASSIGN_OR_RETURN(json::value v, ParseJson(resp.body));
  KubeObject o = ToObject(v);
  o.created = resp.code == 201;
  return o;
}

namespace {
Scale ToScale(const json::value& v) {
  Scale s;
  s.spec_replicas = static_cast<int32_t>(GetInt(v, {"spec", "replicas"}));
  s.status_replicas = static_cast<int32_t>(GetInt(v, {"status", "replicas"}));
  s.selector = GetString(v, {"status", "selector"});
  s.resource_version = GetString(v, {"metadata", "resourceVersion"});
  return s;
}
}  // namespace

absl::StatusOr<Scale> KubeClient::GetScale(const Resource& r,
                                           const std::string& ns,
                                           const std::string& name) {
  Request req;
  req.method = "GET";
  req.path = ObjectPath(r, ns, name, "scale");
  ASSIGN_OR_RETURN(Response resp, Do(req));
  ASSIGN_OR_RETURN(json::value v, ParseJson(resp.body));
  return ToScale(v);
}

absl::StatusOr<Scale> KubeClient::UpdateScale(
    const Resource& r, const std::string& ns, const std::string& name,
    int32_t replicas, const std::string& resource_version) {
  json::object metadata;
  metadata["name"] = name;
  metadata["namespace"] = ns;
  if (!resource_version.empty()) metadata["resourceVersion"] = resource_version;
  json::object body;
  body["kind"] = "Scale";
  body["apiVersion"] = "autoscaling/v1";
  body["metadata"] = std::move(metadata);
  body["spec"] = json::object{{"replicas", replicas}};
  Request req;
  req.method = "PUT";
  req.path = ObjectPath(r, ns, name, "scale");
  req.content_type = "application/json";
  req.body = json::serialize(body);
  ASSIGN_OR_RETURN(Response resp, Do(req));
  ASSIGN_OR_RETURN(json::value v, ParseJson(resp.body));
  return ToScale(v);
}

absl::Status KubeClient::Delete(const Resource& r, const std::string& ns,
                                const std::string& name,
                                const DeleteOptions& options) {
  json::object body;
  body["kind"] = "DeleteOptions";
  body["apiVersion"] = "v1";
  if (!options.propagation_policy.empty()) {
    body["propagationPolicy"] = options.propagation_policy;
  }
  if (options.grace_period_seconds.has_value()) {
    body["gracePeriodSeconds"] = *options.grace_period_seconds;
  }
  if (!options.precondition_uid.empty() ||
      !options.precondition_resource_version.empty()) {
    json::object pre;
    if (!options.precondition_uid.empty())
      pre["uid"] = options.precondition_uid;
    if (!options.precondition_resource_version.empty()) {
      pre["resourceVersion"] = options.precondition_resource_version;
    }
    body["preconditions"] = std::move(pre);
  }
  Request req;
  req.method = "DELETE";
  req.path = ObjectPath(r, ns, name);
  req.content_type = "application/json";
  req.body = json::serialize(body);
  return Do(req).status();
}

absl::Status KubeClient::PodLogs(
    const std::string& ns, const std::string& pod, const PodLogOptions& options,
    const std::function<bool(std::string_view)>& on_data) {
  Request req;
  req.method = "GET";
  req.path = ObjectPath(kPods, ns, pod, "log");
  req.accept = "*/*";
  if (!options.container.empty()) {
    req.query.emplace_back("container", options.container);
  }
  if (options.follow) req.query.emplace_back("follow", "true");
  if (options.previous) req.query.emplace_back("previous", "true");
  if (options.tail_lines > 0) {
    req.query.emplace_back("tailLines", absl::StrCat(options.tail_lines));
  }
  req.cancelled = options.cancelled;
  req.on_data = on_data;
  ASSIGN_OR_RETURN(Response resp, Do(req));
  if (resp.dropped) {
    return absl::UnavailableError(
        absl::StrCat("GET ", req.Target(),
                     ": log stream broke off: ", resp.transport_error));
  }
  return absl::OkStatus();
}

}  // namespace tidal::kube
