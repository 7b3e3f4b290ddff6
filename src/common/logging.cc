#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace tidal {
namespace {

struct LogConfig {
  spdlog::level::level_enum level = spdlog::level::info;
  std::string pattern = "%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%n] %v";
};

LogConfig& Config() {
  static LogConfig* config = new LogConfig();
  return *config;
}

}  // namespace

std::shared_ptr<spdlog::logger> GetLogger(const std::string& component) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto logger = spdlog::get(component);
  if (logger) return logger;
  logger = spdlog::stderr_color_mt(component);
  logger->set_level(Config().level);
  logger->set_pattern(Config().pattern);
  return logger;
}

void InitLogging(const std::string& level, const std::string& format) {
  Config().level = spdlog::level::from_str(level);
  if (format == "json") {
    Config().pattern =
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","msg":"%v"})";
  }
  spdlog::apply_all([](std::shared_ptr<spdlog::logger> l) {
    l->set_level(Config().level);
    l->set_pattern(Config().pattern);
  });
  spdlog::set_level(Config().level);
}

}  // namespace tidal
