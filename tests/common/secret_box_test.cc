#include "common/secret_box.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"

namespace tidal {
namespace {

SecretBox Box(char fill) { return *SecretBox::FromKey(std::string(32, fill)); }

TEST(SecretBoxTest, RoundTrip) {
  SecretBox box = Box('a');
  for (std::string plain :
       {std::string(), std::string("hunter2"), std::string(100000, '\x01')}) {
    auto sealed = box.Seal(plain, "/secrets/default/db");
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_EQ(sealed->key_id, box.key_id());
    EXPECT_EQ(sealed->nonce.size(), SecretBox::kNonceSize);
    EXPECT_EQ(sealed->ciphertext.size(), plain.size() + SecretBox::kTagSize);
    if (!plain.empty()) {
      EXPECT_EQ(sealed->ciphertext.find(plain), std::string::npos);
    }
    auto opened = box.Open(*sealed, "/secrets/default/db");
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plain);
  }
}

TEST(SecretBoxTest, EveryWriteHasAFreshNonce) {
  SecretBox box = Box('a');
  auto a = box.Seal("same", "k");
  auto b = box.Seal("same", "k");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->nonce, b->nonce);
  EXPECT_NE(a->ciphertext, b->ciphertext);
}

TEST(SecretBoxTest, TamperingIsDetected) {
  SecretBox box = Box('a');
  auto sealed = box.Seal("the plaintext", "k");
  ASSERT_TRUE(sealed.ok());
  for (size_t i = 0; i < sealed->ciphertext.size(); ++i) {
    Sealed bad = *sealed;
    bad.ciphertext[i] ^= 0x01;
    EXPECT_TRUE(absl::IsDataLoss(box.Open(bad, "k").status())) << i;
  }
  Sealed bad = *sealed;
  bad.nonce[0] ^= 0x01;
  EXPECT_TRUE(absl::IsDataLoss(box.Open(bad, "k").status()));
  bad = *sealed;
  bad.ciphertext.pop_back();
  EXPECT_TRUE(absl::IsDataLoss(box.Open(bad, "k").status()));
  bad.ciphertext = "short";
  EXPECT_TRUE(absl::IsDataLoss(box.Open(bad, "k").status()));
}

TEST(SecretBoxTest, WrongAadIsRefused) {
  SecretBox box = Box('a');
  auto sealed = box.Seal("v", "/secrets/default/db");
  ASSERT_TRUE(sealed.ok());
  EXPECT_TRUE(
      absl::IsDataLoss(box.Open(*sealed, "/secrets/default/other").status()));
  EXPECT_TRUE(absl::IsDataLoss(box.Open(*sealed, "").status()));
}

TEST(SecretBoxTest, WrongKeyIsRefused) {
  SecretBox a = Box('a'), b = Box('b');
  EXPECT_NE(a.key_id(), b.key_id());
  auto sealed = a.Seal("v", "k");
  ASSERT_TRUE(sealed.ok());
  auto r = b.Open(*sealed, "k");
  EXPECT_TRUE(absl::IsDataLoss(r.status()));
  EXPECT_TRUE(absl::StrContains(r.status().message(), a.key_id()));
  // Even under the other key's id, authentication fails.
  Sealed relabelled = *sealed;
  relabelled.key_id = b.key_id();
  EXPECT_TRUE(absl::IsDataLoss(b.Open(relabelled, "k").status()));
}

TEST(SecretBoxTest, KeyOfTheWrongSizeIsRefused) {
  EXPECT_TRUE(absl::IsInvalidArgument(SecretBox::FromKey("short").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      SecretBox::FromKey(std::string(33, 'x')).status()));
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/secret_box_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/secrets.key";
  }
  void TearDown() override {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& bytes, mode_t mode) {
    std::ofstream(path_, std::ios::binary) << bytes;
    chmod(path_.c_str(), mode);
  }
  std::string dir_, path_;
};

TEST_F(KeyFileTest, CreatedOnceWithMode0600ThenReused) {
  auto a = SecretBox::LoadOrCreateKeyFile(path_, "--secrets-key-file");
  ASSERT_TRUE(a.ok()) << a.status();
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(st.st_size, 32);
  auto b = SecretBox::LoadOrCreateKeyFile(path_, "--secrets-key-file");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->key_id(), b->key_id());
  auto sealed = a->Seal("v", "k");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(*b->Open(*sealed, "k"), "v");
}

TEST_F(KeyFileTest, WrongSizeIsRefusedNamingFlagAndFile) {
  Write("too short", 0600);
  auto r = SecretBox::LoadOrCreateKeyFile(path_, "--secrets-key-file");
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "--secrets-key-file"));
  EXPECT_TRUE(absl::StrContains(r.status().message(), path_));
  EXPECT_TRUE(absl::StrContains(r.status().message(), "32 bytes"));
}

TEST_F(KeyFileTest, GroupOrWorldReadableIsRefused) {
  for (mode_t mode : {0640, 0604, 0660}) {
    Write(std::string(32, 'k'), mode);
    auto r = SecretBox::LoadOrCreateKeyFile(path_, "--secrets-key-file");
    ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << mode;
    EXPECT_TRUE(absl::StrContains(r.status().message(), "--secrets-key-file"));
    EXPECT_TRUE(absl::StrContains(r.status().message(), path_));
    EXPECT_TRUE(absl::StrContains(r.status().message(), "chmod 600"));
  }
  Write(std::string(32, 'k'), 0400);
  EXPECT_TRUE(SecretBox::LoadOrCreateKeyFile(path_, "--secrets-key-file").ok());
}

}  // namespace
}  // namespace tidal
