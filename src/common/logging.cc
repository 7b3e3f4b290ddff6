#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace tidal {
namespace {

struct LogConfig {
  spdlog::level::level_enum level = spdlog::level::info;
  bool json = false;
};

LogConfig& Config() {
  static LogConfig* config = new LogConfig();
  return *config;
}

// `%*`: the message as the inside of a JSON string (quotes, backslashes and
// control characters escaped), so a message like `executable "x" not found`
// still makes one valid JSON object per line.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static const char kHex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        case '\r':
          dest.append(std::string_view("\\r"));
          break;
        case '\t':
          dest.append(std::string_view("\\t"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char esc[6] = {'\\',         'u', '0', '0', kHex[(c >> 4) & 0xf],
                           kHex[c & 0xf]};
            dest.append(esc, esc + 6);
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json) {
  if (!json) {
    return std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%n] %v");
  }
  // Times in UTC, as the Z says.
  auto f = std::make_unique<spdlog::pattern_formatter>(
      spdlog::pattern_time_type::utc);
  f->add_flag<JsonMessageFlag>('*');
  f->set_pattern(
      R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","msg":"%*"})");
  return f;
}

std::shared_ptr<spdlog::logger> GetLogger(const std::string& component) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto logger = spdlog::get(component);
  if (logger) return logger;
  logger = spdlog::stderr_color_mt(component);
  logger->set_level(Config().level);
  logger->set_formatter(MakeLogFormatter(Config().json));
  return logger;
}

void InitLogging(const std::string& level, const std::string& format) {
  Config().level = spdlog::level::from_str(level);
  Config().json = format == "json";
  spdlog::apply_all([](std::shared_ptr<spdlog::logger> l) {
    l->set_level(Config().level);
    l->set_formatter(MakeLogFormatter(Config().json));
  });
  spdlog::set_level(Config().level);
}

}  // namespace tidal
