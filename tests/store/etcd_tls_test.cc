#include "store/etcd_tls.h"

#include <gtest/gtest.h>

namespace tidal::etcd_internal {
namespace {

TEST(CertificateNamesTest, DnsNamesWildcardsAndAddresses) {
  // DNS names without case; a wildcard covers one label.
  EXPECT_TRUE(CertificateNames({"etcd1.lan"}, {}, {"ETCD1.lan"}));
  EXPECT_TRUE(CertificateNames({"*.lan"}, {}, {"etcd1.lan"}));
  EXPECT_FALSE(CertificateNames({"*.lan"}, {}, {"a.etcd1.lan"}));
  EXPECT_FALSE(CertificateNames({"*.lan"}, {}, {"lan"}));
  EXPECT_FALSE(CertificateNames({"etcd1.lan"}, {}, {"etcd2.lan"}));
  // Any of the endpoints: the second member's own name.
  EXPECT_TRUE(CertificateNames({"etcd2.lan"}, {}, {"etcd1.lan", "etcd2.lan"}));
  // Addresses as addresses, written either way, never as DNS names.
  EXPECT_TRUE(CertificateNames({}, {"10.0.0.2"}, {"10.0.0.1", "10.0.0.2"}));
  EXPECT_TRUE(CertificateNames({}, {"0:0:0:0:0:0:0:1"}, {"::1"}));
  EXPECT_TRUE(CertificateNames({}, {"fd00::2"}, {"[fd00::2]"}));
  EXPECT_FALSE(CertificateNames({"10.0.0.2"}, {}, {"10.0.0.2"}));
  EXPECT_FALSE(CertificateNames({}, {"10.0.0.3"}, {"10.0.0.2"}));
  EXPECT_FALSE(CertificateNames({}, {}, {"etcd1.lan"}));
}

}  // namespace
}  // namespace tidal::etcd_internal
