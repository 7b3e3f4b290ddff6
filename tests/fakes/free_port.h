#pragma once

// FreeLoopbackPort: a TCP port for a server a test starts (tidald, etcd, an
// instance), reserved for the rest of the test process.
//
// Ports come from 2000-9999: under every test's instance range (10000-32767)
// and the kernel's ephemeral range (32768 and up), so neither an outgoing
// connection nor a listener bound to port 0 anywhere can take one between
// the pick and the server's bind. A port is handed out only while this
// process holds an flock on /tmp/tidal-test-ports/<port>.lock, kept until
// the process exits: tests run in parallel (ctest -j) never get the same one.
// It must also bind on 0.0.0.0 at the moment it is picked. Returns 0 when
// no port is left.

namespace tidal::testing {

int FreeLoopbackPort();

}  // namespace tidal::testing
