#include "gateway/body_out.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gateway/header_policy.h"

namespace tidal::gateway {

namespace {

void AppendVersion(std::string* out, unsigned version) {
  char v[] = {'H', 'T',
              'T', 'P',
              '/', static_cast<char>('0' + version / 10),
              '.', static_cast<char>('0' + version % 10)};
  out->append(v, sizeof(v));
}

}  // namespace

void BodyOut::AppendStartLine(const boost::beast::http::header<true>& h) {
  head_.append(h.method_string().data(), h.method_string().size());
  head_ += ' ';
  head_.append(h.target().data(), h.target().size());
  head_ += ' ';
  AppendVersion(&head_, h.version());
  head_.append("\r\n", 2);
}

void BodyOut::AppendStartLine(const boost::beast::http::header<false>& h) {
  AppendVersion(&head_, h.version());
  const unsigned status = h.result_int();
  char code[] = {' ', static_cast<char>('0' + status / 100 % 10),
                 static_cast<char>('0' + status / 10 % 10),
                 static_cast<char>('0' + status % 10), ' '};
  head_.append(code, sizeof(code));
  head_.append(h.reason().data(), h.reason().size());
  head_.append("\r\n", 2);
}

const std::vector<boost::asio::const_buffer>& BodyOut::Frame(
    const char* data, size_t n, bool last,
    const boost::beast::http::fields& fields) {
  if (!header_pending_) bufs_.clear();
  header_pending_ = false;
  if (!body_) return bufs_;
  if (!chunked_) {
    if (n > 0) bufs_.emplace_back(data, n);
    return bufs_;
  }
  if (n > 0) {
    int len = absl::SNPrintF(size_line_, sizeof(size_line_), "%x\r\n", n);
    bufs_.emplace_back(size_line_, static_cast<size_t>(len));
    bufs_.emplace_back(data, n);
    bufs_.emplace_back("\r\n", 2);
  }
  if (last) {
    tail_ = "0\r\n";
    if (!header_fields_.empty()) {
      for (const auto& f : fields) {
        absl::string_view name(f.name_string().data(), f.name_string().size());
        if (std::binary_search(header_fields_.begin(), header_fields_.end(),
                               static_cast<const void*>(&f)) ||
            ForbiddenTrailer(name)) {
          continue;
        }
        absl::StrAppend(&tail_, name, ": ",
                        absl::string_view(f.value().data(), f.value().size()),
                        "\r\n");
      }
    }
    tail_ += "\r\n";
    bufs_.emplace_back(tail_.data(), tail_.size());
  }
  return bufs_;
}

}  // namespace tidal::gateway
