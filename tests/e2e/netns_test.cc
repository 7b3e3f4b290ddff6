// The test hosts of tests/e2e/netns.h: two namespaces reach each other over
// the bridge, a partition cuts them apart, healing joins them again, and
// nothing is left behind.

#include "e2e/netns.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "e2e/e2e_util.h"

namespace tidal::e2e {
namespace {

// Connects from the calling thread's namespace to addr:port (1 s timeout).
bool Connects(const std::string& addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  close(fd);
  return ok;
}

TEST(TestNetworkTest, HostsTalkUntilPartitionedAndNothingIsLeftBehind) {
  std::string why;
  std::vector<std::string> names;
  {
    auto net = TestNetwork::Create(2, &why);
    if (net == nullptr) GTEST_SKIP() << "no network namespaces here: " << why;
    names = {net->ns(0), net->ns(1)};
    // A listener on host 1.
    int listener = -1;
    int port = 0;
    net->RunOn(1, [&] {
      listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      inet_pton(AF_INET, net->address(1).c_str(), &sa.sin_addr);
      if (bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 &&
          listen(listener, 16) == 0) {
        socklen_t len = sizeof(sa);
        getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len);
        port = ntohs(sa.sin_port);
      }
    });
    ASSERT_GT(port, 0);
    bool before = false, during = true, after = false, from_root = true;
    // The new links may take a moment to carry traffic.
    net->RunOn(0, [&] {
      before = Eventually([&] { return Connects(net->address(1), port); });
    });
    ASSERT_TRUE(net->SetLinkUp(1, false));
    net->RunOn(0, [&] { during = Connects(net->address(1), port); });
    ASSERT_TRUE(net->SetLinkUp(1, true));
    net->RunOn(0, [&] {
      after = Eventually([&] { return Connects(net->address(1), port); });
    });
    from_root = Connects(net->address(1), port);  // not this machine's network
    close(listener);
    EXPECT_TRUE(before);
    EXPECT_FALSE(during);
    EXPECT_TRUE(after);
    EXPECT_FALSE(from_root);
    // A command runs on a host.
    std::vector<std::string> argv = net->Exec(0);
    argv.insert(argv.end(), {"/bin/ip", "-4", "addr", "show", "eth0"});
    CommandResult r = e2e::Run(argv);
    EXPECT_TRUE(absl::StrContains(r.out, net->address(0))) << r.out << r.err;
  }
  CommandResult list = e2e::Run({"/bin/ip", "netns", "list"});
  for (const auto& n : names) {
    EXPECT_FALSE(absl::StrContains(list.out, n)) << list.out;
  }
}

}  // namespace
}  // namespace tidal::e2e
