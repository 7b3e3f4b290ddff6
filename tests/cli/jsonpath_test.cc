// kubectl's JSONPath subset behind get -o jsonpath=, custom-columns= and
// --sort-by (src/cli/jsonpath.h).
#include "cli/jsonpath.h"

#include "gtest/gtest.h"

namespace tidal::cli {
namespace {

constexpr char kList[] = R"({"kind": "List", "items": [
  {"metadata": {"name": "web", "labels": {"tier": "front"}},
   "spec": {"replicas": 3}, "status": {"readyReplicas": 3}},
  {"metadata": {"name": "api"}, "spec": {"replicas": 10},
   "status": {"readyReplicas": 2}},
  {"metadata": {"name": "batch"}, "spec": {"replicas": 1}}
]})";

TEST(JsonPathTest, TemplatesAsKubectlUsersWriteThem) {
  EXPECT_EQ(*JsonPathTemplate(kList, "{.items[*].metadata.name}"),
            "web api batch");
  EXPECT_EQ(*JsonPathTemplate(kList, "{.items[0].spec.replicas}"), "3");
  EXPECT_EQ(*JsonPathTemplate(kList, "{.items[-1].metadata.name}"), "batch");
  EXPECT_EQ(*JsonPathTemplate(kList, "{$.items[1]['metadata'].name}"), "api");
  EXPECT_EQ(*JsonPathTemplate(
                kList,
                "{range .items[*]}{.metadata.name}{\"\\t\"}{.spec.replicas}"
                "{\"\\n\"}{end}"),
            "web\t3\napi\t10\nbatch\t1\n");
  EXPECT_EQ(*JsonPathTemplate(kList, "names: {.items[*].metadata.name}!"),
            "names: web api batch!");
  // Maps as JSON; a missing field prints nothing.
  EXPECT_EQ(*JsonPathTemplate(kList, "{.items[0].metadata.labels}"),
            "{\"tier\":\"front\"}");
  EXPECT_EQ(*JsonPathTemplate(kList, "{.items[2].status.readyReplicas}"), "");
  for (const char* bad : {"{.items[*].metadata.name", "{range .items[*]}x",
                          "{end}", "{.items[x]}", "{items}"}) {
    EXPECT_EQ(JsonPathTemplate(kList, bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(JsonPathTest, CustomColumnsAndSortBy) {
  std::vector<std::string> items = {
      R"({"metadata": {"name": "web"}, "spec": {"replicas": 3}})",
      R"({"metadata": {"name": "api"}, "spec": {"replicas": 10}})",
      R"({"metadata": {"name": "batch"}})"};
  EXPECT_EQ(
      *CustomColumns(items, "NAME:.metadata.name,REPLICAS:.spec.replicas"),
      "NAME    REPLICAS\n"
      "web     3\n"
      "api     10\n"
      "batch   <none>\n");
  EXPECT_EQ(CustomColumns(items, "NAME").status().code(),
            absl::StatusCode::kInvalidArgument);
  // Numbers by value (10 after 3), missing values first.
  EXPECT_EQ(*SortOrder(items, ".spec.replicas"),
            (std::vector<size_t>{2, 0, 1}));
  EXPECT_EQ(*SortOrder(items, "{.metadata.name}"),
            (std::vector<size_t>{1, 2, 0}));
}

}  // namespace
}  // namespace tidal::cli
