// GrpcRemoteLogOpener (src/ha/remote_logs.h) against a node whose API ends
// the call badly.

#include "ha/remote_logs.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fakes/statusless_h2_server.h"

namespace tidal::ha {
namespace {

// A node being stopped may end the Logs call with trailers holding no
// grpc-status. gRPC 1.51's retry filter aborted the asking tidald on them
// (grpc/grpc#34683); without it the stream fails, naming the node.
TEST(GrpcRemoteLogOpenerTest, TrailersWithoutAStatusFailTheStream) {
  testing::StatuslessH2Server server;
  ASSERT_GT(server.port(), 0);
  RemoteLogTarget target;
  target.node = "n2";
  target.api_address = absl::StrCat("127.0.0.1:", server.port());
  target.namespace_ = "default";
  target.app = "web";
  target.instance_id = "web-1";
  auto stream = GrpcRemoteLogOpener()(target, LogOptions());
  ASSERT_TRUE(stream.ok()) << stream.status();
  absl::StatusOr<std::string> next;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    next = (*stream)->Next(absl::Seconds(1));
  } while (next.ok() && absl::Now() < deadline);
  ASSERT_FALSE(next.ok());
  EXPECT_FALSE(absl::IsOutOfRange(next.status())) << next.status();
  EXPECT_TRUE(absl::StrContains(next.status().message(), "n2"))
      << next.status();
  EXPECT_GE(server.answered(), 1);
}

}  // namespace
}  // namespace tidal::ha
