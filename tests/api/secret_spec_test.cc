// Secret documents and env valueFrom.secretKeyRef in specs (spec.h).
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "api/spec.h"

namespace tidal::spec {
namespace {

constexpr char kPlain[] = "S3cr3t-Pl41n-zz9";

std::string Errors(const ParseResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.ToString() + "\n";
  return out;
}

TEST(SecretSpecTest, SecretsAndAppsParseFromOneStream) {
  ParseResult r = ParseApps(R"(apiVersion: tidal.dev/v1
kind: Secret
metadata:
  name: db
  labels: {team: a}
data:
  user: YWRtaW4=
  password: b2xk
stringData:
  password: S3cr3t-Pl41n-zz9
---
apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  template:
    command: [app]
    env:
      - name: DB_PASSWORD
        valueFrom:
          secretKeyRef: {name: db, key: password}
      - name: TOKEN
        valueFrom:
          secretKeyRef: {name: api, key: token, optional: true}
)",
                            "s.yaml", "prod");
  ASSERT_TRUE(r.ok()) << Errors(r);
  ASSERT_EQ(r.secrets.size(), 1u);
  ASSERT_EQ(r.apps.size(), 1u);
  const v1::Secret& s = r.secrets[0].secret;
  EXPECT_EQ(s.metadata().name(), "db");
  EXPECT_EQ(s.metadata().namespace_(), "prod");
  EXPECT_EQ(s.metadata().labels().at("team"), "a");
  EXPECT_EQ(s.data().at("user"), "admin");
  EXPECT_EQ(s.data().at("password"), kPlain);  // stringData wins
  EXPECT_TRUE(s.string_data().empty());
  ASSERT_EQ(s.keys_size(), 2);
  EXPECT_EQ(s.keys(0).name(), "password");
  EXPECT_EQ(s.keys(0).size(), 16);
  const auto& env = r.apps[0].app.spec().template_().env();
  ASSERT_EQ(env.size(), 2);
  EXPECT_EQ(env[0].value_from().secret_key_ref().name(), "db");
  EXPECT_EQ(env[0].value_from().secret_key_ref().key(), "password");
  EXPECT_FALSE(env[0].value_from().secret_key_ref().optional());
  EXPECT_TRUE(env[1].value_from().secret_key_ref().optional());
  // The App's YAML keeps the reference (list form).
  std::string yaml = AppToYaml(r.apps[0].app);
  EXPECT_TRUE(absl::StrContains(yaml, "secretKeyRef")) << yaml;
  ParseResult again = ParseApps(yaml, "again.yaml");
  ASSERT_TRUE(again.ok()) << Errors(again);
  EXPECT_EQ(again.apps[0].app.spec().template_().SerializeAsString(),
            r.apps[0].app.spec().template_().SerializeAsString());
}

TEST(SecretSpecTest, SecretErrorsNameFileLineAndFieldButNeverTheValue) {
  ParseResult r = ParseApps(R"(apiVersion: tidal.dev/v1
kind: Secret
metadata:
  name: Bad_Name
  colour: red
data:
  ok: "!!S3cr3t-Pl41n-zz9!!"
  "bad key": YQ==
stringData:
  nested: {a: b}
typo: 1
)",
                            "s.yaml");
  ASSERT_FALSE(r.ok());
  const std::string e = Errors(r);
  EXPECT_TRUE(absl::StrContains(e, "s.yaml:4:3: metadata.name:")) << e;
  EXPECT_TRUE(absl::StrContains(e, "s.yaml:5:3: metadata.colour: unknown"))
      << e;
  EXPECT_TRUE(absl::StrContains(e, "s.yaml:7:7: data.ok: not valid base64"))
      << e;
  EXPECT_TRUE(absl::StrContains(e, "s.yaml:8:3: data.bad key:")) << e;
  EXPECT_TRUE(absl::StrContains(e,
                                "s.yaml:10:11: stringData.nested: must be "
                                "a string"))
      << e;
  EXPECT_TRUE(absl::StrContains(e, "s.yaml:11:1: typo: unknown field")) << e;
  EXPECT_FALSE(absl::StrContains(e, kPlain)) << e;
  EXPECT_TRUE(r.secrets.empty());
}

TEST(SecretSpecTest, AnInvalidSecretRefusesTheAppsOfTheStreamToo) {
  ParseResult r = ParseApps(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec: {template: {command: [app]}}
---
apiVersion: tidal.dev/v1
kind: Secret
metadata: {name: db}
data: {k: "not base64"}
)",
                            "s.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.apps.empty());
  EXPECT_TRUE(r.secrets.empty());
  EXPECT_TRUE(absl::StrContains(Errors(r), "s.yaml:9:")) << Errors(r);
}

TEST(SecretSpecTest, ValueFromIsValidated) {
  ParseResult r = ParseApps(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  template:
    command: [app]
    env:
      - name: BOTH
        value: x
        valueFrom:
          secretKeyRef: {name: db, key: k}
      - name: NO_REF
        valueFrom: {}
      - name: NO_NAME
        valueFrom:
          secretKeyRef: {key: k}
      - name: NO_KEY
        valueFrom:
          secretKeyRef:
            name: db
      - name: BAD_KEY
        valueFrom:
          secretKeyRef: {name: db, key: "a/b"}
)",
                            "a.yaml");
  const std::string e = Errors(r);
  EXPECT_TRUE(absl::StrContains(
      e,
      "a.yaml:10:9: spec.template.env[0].valueFrom: set either value or "
      "valueFrom"))
      << e;
  EXPECT_TRUE(absl::StrContains(
      e, "spec.template.env[1].valueFrom: required: secretKeyRef"))
      << e;
  EXPECT_TRUE(absl::StrContains(
      e,
      "a.yaml:16:11: spec.template.env[2].valueFrom.secretKeyRef.name: "
      "required"))
      << e;
  EXPECT_TRUE(absl::StrContains(
      e, "spec.template.env[3].valueFrom.secretKeyRef.key: required"))
      << e;
  EXPECT_TRUE(absl::StrContains(
      e,
      "a.yaml:23:41: spec.template.env[4].valueFrom.secretKeyRef.key: "
      "must be letters"))
      << e;
}

TEST(SecretSpecTest, ValueFromInTheMapFormOfEnvSaysToUseTheList) {
  ParseResult r = ParseApps(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  template:
    command: [app]
    env:
      DB:
        valueFrom: {secretKeyRef: {name: db, key: k}}
)",
                            "a.yaml");
  EXPECT_TRUE(absl::StrContains(
      Errors(r),
      "a.yaml:9:9: spec.template.env[0].valueFrom: valueFrom needs the list "
      "form of env"))
      << Errors(r);
}

TEST(SecretSpecTest, RedactedYamlAndJsonShowKeysNeverValues) {
  v1::Secret s;
  s.set_api_version("tidal.dev/v1");
  s.set_kind("Secret");
  s.mutable_metadata()->set_name("db");
  s.mutable_metadata()->set_namespace_("default");
  (*s.mutable_data())["password"] = kPlain;
  (*s.mutable_string_data())["token"] = kPlain;
  NormalizeSecret(&s);
  EXPECT_TRUE(ValidateSecret(s).empty());
  for (const std::string& out : {SecretToYaml(s), SecretToJson(s)}) {
    EXPECT_FALSE(absl::StrContains(out, kPlain)) << out;
    EXPECT_TRUE(absl::StrContains(out, "password")) << out;
    EXPECT_TRUE(absl::StrContains(out, "token")) << out;
    EXPECT_TRUE(absl::StrContains(out, kRedacted)) << out;
  }
  v1::Secret r = RedactSecret(s);
  EXPECT_TRUE(r.data().empty());
  EXPECT_EQ(r.keys_size(), 2);
  EXPECT_FALSE(absl::StrContains(r.SerializeAsString(), kPlain));
}

TEST(SecretSpecTest, ValidateSecretBuiltInCode) {
  v1::Secret s;
  s.set_api_version("tidal.dev/v1");
  s.set_kind("Secret");
  s.mutable_metadata()->set_namespace_("default");
  (*s.mutable_data())["a b"] = kPlain;
  (*s.mutable_data())["big"] = std::string(1 << 20, 'x');
  std::string all;
  for (const auto& e : ValidateSecret(s)) all += e.ToString() + "\n";
  EXPECT_TRUE(absl::StrContains(all, "metadata.name: required")) << all;
  EXPECT_TRUE(absl::StrContains(all, "data.a b:")) << all;
  EXPECT_TRUE(absl::StrContains(all, "at most 1MiB")) << all;
  EXPECT_FALSE(absl::StrContains(all, kPlain));
}

}  // namespace
}  // namespace tidal::spec
