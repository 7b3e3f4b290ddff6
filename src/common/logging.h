#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace tidal {

// Returns the named logger of a component ("controller", "store", ...),
// creating it with the process-wide sink and level on first use. Thread-safe.
std::shared_ptr<spdlog::logger> GetLogger(const std::string& component);

// The formatter of every logger: text ("2026-12-01T10:00:00.000 I [store]
// msg") or one JSON object per line with the message escaped.
std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json);

// Sets up every logger: level ("debug", "info", "warn", "error") and format
// ("text" or "json"). Call once at start-up; later loggers follow it too.
void InitLogging(const std::string& level, const std::string& format);

}  // namespace tidal
