#include "api/label_selector.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace tidal {
namespace {

using Labels = std::map<std::string, std::string>;

struct Row {
  std::string selector;
  Labels labels;
  bool want;
};

TEST(LabelSelectorTest, MatchesLikeKubernetes) {
  const Labels web = {{"app", "web"}, {"tier", "frontend"}, {"env", "prod"}};
  const Row rows[] = {
      {"", web, true},
      {"app=web", web, true},
      {"app==web", web, true},
      {"app = web", web, true},
      {"app=db", web, false},
      {"app!=db", web, true},
      {"app!=web", web, false},
      {"missing!=x", web, true},
      {"env in (prod,staging)", web, true},
      {"env in (staging)", web, false},
      {"env in (staging, prod )", web, true},
      {"missing in (a)", web, false},
      {"env notin (prod)", web, false},
      {"env notin (dev,qa)", web, true},
      {"missing notin (a)", web, true},
      {"tier", web, true},
      {"missing", web, false},
      {"!missing", web, true},
      {"!tier", web, false},
      {"app=web,tier=frontend", web, true},
      {"app=web,tier=backend", web, false},
      {"app=web, env in (prod), !legacy, tier", web, true},
      {"tidal.dev/team=core", {{"tidal.dev/team", "core"}}, true},
      {"empty=", {{"empty", ""}}, true},
      {"inside=x", {{"inside", "x"}}, true},
  };
  for (const Row& r : rows) {
    auto sel = LabelSelector::Parse(r.selector);
    ASSERT_TRUE(sel.ok()) << r.selector << ": " << sel.status();
    EXPECT_EQ(sel->Matches(r.labels), r.want) << r.selector;
  }
}

TEST(LabelSelectorTest, RejectsBadSyntaxWithPosition) {
  for (const char* bad : {"app=web,", ",app", "env in prod", "env in (a b)",
                          "env in (a", "!", "app=web tier=x", "=web"}) {
    auto sel = LabelSelector::Parse(bad);
    ASSERT_FALSE(sel.ok()) << bad;
    EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(sel.status().message().find("at column"), std::string_view::npos)
        << sel.status();
  }
}

TEST(LabelSelectorTest, ToStringRoundTrips) {
  auto sel =
      LabelSelector::Parse("a = 1, b!=2, c in (x, y), d notin (z), e, !f");
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(sel->ToString(), "a=1,b!=2,c in (x,y),d notin (z),e,!f");
  auto again = LabelSelector::Parse(sel->ToString());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->ToString(), sel->ToString());
  EXPECT_TRUE(LabelSelector::Parse("  ")->empty());
}

}  // namespace
}  // namespace tidal
