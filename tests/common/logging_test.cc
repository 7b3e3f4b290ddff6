#include "common/logging.h"

#include <sstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

namespace tidal {
namespace {

std::string LogOnce(bool json, const std::string& msg) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("store", sink);
  logger.set_formatter(MakeLogFormatter(json));
  logger.warn("{}", msg);
  logger.flush();
  return out.str();
}

TEST(LoggingTest, JsonLinesEscapeTheMessage) {
  std::string line =
      LogOnce(true, "executable \"x\" not found\nin C:\\bin\t\x01");
  EXPECT_NE(line.find(R"("level":"warning","component":"store",)"),
            std::string::npos)
      << line;
  EXPECT_NE(
      line.find(
          R"("msg":"executable \"x\" not found\nin C:\\bin\t\u0001"})"),
      std::string::npos)
      << line;
  // One object per line: the only newline is the one that ends it.
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  EXPECT_EQ(line.rfind("{\"time\":\"", 0), 0u) << line;
  // UTC with fractional seconds: "YYYY-MM-DDTHH:MM:SS.ffffffZ".
  size_t z = line.find("Z\",\"level\"");
  ASSERT_NE(z, std::string::npos) << line;
  EXPECT_EQ(line.substr(9, z - 9).size(),
            std::string("2026-12-01T10:00:00.000000").size())
      << line;
}

TEST(LoggingTest, TextLinesNameTheComponent) {
  std::string line = LogOnce(false, "app=default/hello started");
  EXPECT_NE(line.find(" W [store] app=default/hello started"),
            std::string::npos)
      << line;
}

}  // namespace
}  // namespace tidal
