#include "gateway/body_out.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gateway/header_policy.h"

namespace tidal::gateway {

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
