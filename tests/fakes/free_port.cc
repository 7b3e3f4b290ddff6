#include "fakes/free_port.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

namespace tidal::testing {
namespace {

constexpr int kFirstPort = 2000;
constexpr int kLastPort = 9999;
constexpr char kLockDir[] = "/tmp/tidal-test-ports";

// True when nothing is bound to the port on any IPv4 address right now.
bool Bindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// Takes the port's lock for the life of the process (the descriptor stays
// open on purpose); false when another process, or this one, holds it.
bool Reserve(int port) {
  const std::string path =
      std::string(kLockDir) + "/" + std::to_string(port) + ".lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  return true;
}

}  // namespace

int FreeLoopbackPort() {
  static std::mutex mu;
  static int next = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (next == 0) {
    // Shared by every user of the machine's tests; sticky like /tmp.
    ::mkdir(kLockDir, 01777);
    ::chmod(kLockDir, 01777);
    // Parallel processes start at different places, so they seldom try
    // the same ports.
    const unsigned seed = static_cast<unsigned>(::getpid()) * 2654435761u ^
                          static_cast<unsigned>(::time(nullptr));
    next = kFirstPort + static_cast<int>(seed % (kLastPort - kFirstPort + 1));
  }
  const int span = kLastPort - kFirstPort + 1;
  for (int tried = 0; tried < span; ++tried) {
    const int port = next;
    next = next == kLastPort ? kFirstPort : next + 1;
    // Reserve first: a flock this process already holds is refused too, so
    // one process never hands out a port twice.
    if (Reserve(port) && Bindable(port)) return port;
  }
  return 0;
}

}  // namespace tidal::testing
