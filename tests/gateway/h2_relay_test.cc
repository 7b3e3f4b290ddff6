// The pure parts of the gateway's HTTP/2 relay (h2_relay.h): the preface,
// gRPC's timeouts and status codes as the metrics count them.
#include "gateway/h2_relay.h"

#include <gtest/gtest.h>

namespace tidal::gateway {
namespace {

TEST(H2RelayTest, PriorKnowledgePrefaceIsRecognized) {
  EXPECT_TRUE(IsH2Preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
  EXPECT_TRUE(IsH2Preface("PRI * HTTP/2.0\r\n"));
  EXPECT_FALSE(IsH2Preface("PRI * HTTP/1.1\r\n"));
  EXPECT_FALSE(IsH2Preface("GET / HTTP/2.0\r\n"));
  EXPECT_FALSE(IsH2Preface("PRI * HTTP/2.0"));  // the line is not complete
}

TEST(H2RelayTest, GrpcTimeoutUnitsAreMilliseconds) {
  EXPECT_EQ(ParseGrpcTimeoutMs("2H"), 2 * 3600 * 1000);
  EXPECT_EQ(ParseGrpcTimeoutMs("3M"), 3 * 60 * 1000);
  EXPECT_EQ(ParseGrpcTimeoutMs("5S"), 5000);
  EXPECT_EQ(ParseGrpcTimeoutMs("250m"), 250);
  EXPECT_EQ(ParseGrpcTimeoutMs("1500u"), 2);  // rounded up: never 0 early
  EXPECT_EQ(ParseGrpcTimeoutMs("1n"), 1);
  EXPECT_EQ(ParseGrpcTimeoutMs("99999999S"), 99999999000);
  // The grammar: 1 to 8 digits and a unit.
  EXPECT_EQ(ParseGrpcTimeoutMs("S"), -1);
  EXPECT_EQ(ParseGrpcTimeoutMs("123456789S"), -1);
  EXPECT_EQ(ParseGrpcTimeoutMs("10s"), -1);
  EXPECT_EQ(ParseGrpcTimeoutMs("-1S"), -1);
  EXPECT_EQ(ParseGrpcTimeoutMs(""), -1);
}

TEST(H2RelayTest, GrpcStatusesCountAsTheirHttpClass) {
  EXPECT_EQ(GrpcStatusToHttp(0), 200);   // OK
  EXPECT_EQ(GrpcStatusToHttp(1), 499);   // CANCELLED: the client went away
  EXPECT_EQ(GrpcStatusToHttp(3), 400);   // INVALID_ARGUMENT
  EXPECT_EQ(GrpcStatusToHttp(4), 504);   // DEADLINE_EXCEEDED
  EXPECT_EQ(GrpcStatusToHttp(5), 404);   // NOT_FOUND
  EXPECT_EQ(GrpcStatusToHttp(7), 403);   // PERMISSION_DENIED
  EXPECT_EQ(GrpcStatusToHttp(8), 429);   // RESOURCE_EXHAUSTED
  EXPECT_EQ(GrpcStatusToHttp(12), 501);  // UNIMPLEMENTED
  EXPECT_EQ(GrpcStatusToHttp(13), 500);  // INTERNAL
  EXPECT_EQ(GrpcStatusToHttp(14), 503);  // UNAVAILABLE
  EXPECT_EQ(GrpcStatusToHttp(16), 401);  // UNAUTHENTICATED
  EXPECT_EQ(GrpcStatusToHttp(2), 500);   // UNKNOWN
  EXPECT_EQ(GrpcStatusToHttp(99), 500);  // not a code: the server's fault
}

}  // namespace
}  // namespace tidal::gateway
