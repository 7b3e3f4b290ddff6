// CheckPortFree against real sockets on 127.0.0.1.

#include "common/port_check.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tidal::common {
namespace {

// A listener as the gateway's are (SO_REUSEADDR and SO_REUSEPORT) on a port
// the kernel picks; its fd, and the port in *port.
int ReusePortListener(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

TEST(PortCheckTest, APortSomethingListensOnIsTakenEvenWithReusePort) {
  int port = 0;
  const int fd = ReusePortListener(&port);
  absl::Status s = CheckPortFree("127.0.0.1", port, "gateway");
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(s.message(),
            absl::StrCat("gateway: cannot listen on 127.0.0.1:", port,
                         ": Address already in use (another program, or "
                         "another tidald, listens there)"));
  s = CheckListenAddressFree(absl::StrCat("127.0.0.1:", port), "API");
  EXPECT_TRUE(absl::StartsWith(s.message(), "API: cannot listen on")) << s;
  close(fd);
  // Let go, the port is free again; the check holds nothing.
  EXPECT_TRUE(CheckPortFree("127.0.0.1", port, "gateway").ok());
  EXPECT_TRUE(CheckPortFree("127.0.0.1", port, "gateway").ok());
}

TEST(PortCheckTest, WhatItCannotJudgeIsLeftToTheServer) {
  EXPECT_TRUE(CheckPortFree("127.0.0.1", 0, "x").ok());     // any port
  EXPECT_TRUE(CheckPortFree("localhost", 7070, "x").ok());  // not a literal
  EXPECT_TRUE(CheckListenAddressFree("127.0.0.1", "x").ok());
  EXPECT_TRUE(CheckListenAddressFree("dns:///tidal:x", "x").ok());
}

}  // namespace
}  // namespace tidal::common
