#pragma once

// ApiLimits: what one client, and all clients together, may ask of the gRPC
// API at once (tidald's --api-* flags; docs/operations.md, "Limits of the
// API"), apart from service.h so that the daemon's config carries it
// without the service's headers.

#include <cstddef>

#include "absl/time/time.h"

namespace tidal {

struct ApiLimits {
  // Largest request message the API receives (gRPC refuses a larger one
  // with RESOURCE_EXHAUSTED before the service sees it); tidald
  // --api-max-message-size.
  size_t max_message_bytes = 4 << 20;
  // Calls in flight, in total and per client (its token; its address
  // without one); 0: no limit. Beyond them a call gets RESOURCE_EXHAUSTED
  // "... retry in Ns" at once (and trailing metadata retry-after-ms).
  // Applies: Apply, Scale, Delete, Rollout (--api-max-applies[-per-client]).
  int max_applies = 16;
  int max_applies_per_client = 4;
  // Reads: Get, List, ListInstances, ListEvents, ListRevisions, Top
  // (--api-max-reads[-per-client]).
  int max_reads = 64;
  int max_reads_per_client = 16;
  // Streams: Watch and Logs (--api-max-streams[-per-client]).
  int max_streams = 256;
  int max_streams_per_client = 32;
  // A Watch or Logs stream whose client has read nothing for this long (a
  // write has waited on it) is cut: the call is cancelled and tidald logs
  // "watch stream cut: ..."; 0: never (--api-stream-stall-timeout).
  absl::Duration stream_stall_timeout = absl::Seconds(30);
  // The nice value the API's threads take on their first call (Linux: per
  // thread), so that under a flood of calls the gateway's threads (nice 0)
  // keep the CPU and the apps' traffic its latency; 0: unchanged. Only ever
  // raised (a thread cannot lower it back without CAP_SYS_NICE). tidald
  // --api-thread-nice.
  int thread_nice = 0;
  // Each client's Apply request bytes are paced to this rate (a bucket of
  // apply_burst_bytes; past it the client's applies wait before they are
  // served or refused, api/client_pacer.h); 0: no pacing. tidald
  // --api-apply-bytes-per-second; the burst is twice --api-max-message-size.
  int64_t apply_bytes_per_second = 4 << 20;
  int64_t apply_burst_bytes = 8 << 20;
  // The CPU time tidald may spend per second on each client's applies that
  // are refused (a bucket of 20 times as much; past it the client's applies
  // wait the same way); zero: no pacing by CPU. tidald
  // --api-refused-apply-cpu-per-second.
  absl::Duration refused_apply_cpu_per_second = absl::Milliseconds(10);
  // What a refusal tells the client to wait before it tries again.
  absl::Duration retry_after = absl::Seconds(1);
};

}  // namespace tidal
