#include "deployer/steps.h"

#include <gtest/gtest.h>

namespace tidal::deployer {
namespace {

std::vector<int32_t> Targets(const std::vector<RolloutStep>& steps) {
  std::vector<int32_t> out;
  for (const auto& s : steps) out.push_back(s.new_target);
  return out;
}

TEST(StepsTest, BatchesSpreadTheRemainderOverTheFirstBatches) {
  tidal::v1::RolloutSpec spec;
  spec.set_batches(4);
  EXPECT_EQ(Targets(BuildSteps(spec, 10)), (std::vector<int32_t>{3, 6, 8, 10}));
  spec.set_batches(5);
  EXPECT_EQ(Targets(BuildSteps(spec, 10)),
            (std::vector<int32_t>{2, 4, 6, 8, 10}));
  // More batches than instances: one instance per batch.
  EXPECT_EQ(Targets(BuildSteps(spec, 3)), (std::vector<int32_t>{1, 2, 3}));
  spec.set_batches(0);
  spec.set_batch_size(3);
  EXPECT_EQ(Targets(BuildSteps(spec, 10)), (std::vector<int32_t>{3, 6, 8, 10}));
  // Default: everything in one step.
  EXPECT_EQ(Targets(BuildSteps(tidal::v1::RolloutSpec(), 7)),
            (std::vector<int32_t>{7}));
}

TEST(StepsTest, PausesBetweenBatchesNotAfterTheLast) {
  tidal::v1::RolloutSpec spec;
  spec.set_batches(3);
  spec.set_batch_interval_ms(5000);
  auto steps = BuildSteps(spec, 9);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].pause, absl::Seconds(5));
  EXPECT_EQ(steps[1].pause, absl::Seconds(5));
  EXPECT_EQ(steps[2].pause, absl::ZeroDuration());
}

TEST(StepsTest, CanaryWeightsAndReplicasThenBatches) {
  tidal::v1::RolloutSpec spec;
  spec.set_strategy("canary");
  auto* s1 = spec.add_steps();
  s1->set_weight(10);
  s1->set_pause_ms(60000);
  auto* s2 = spec.add_steps();
  s2->set_replicas(5);
  s2->set_pause_manual(true);
  spec.set_batches(2);
  auto steps = BuildSteps(spec, 10);
  EXPECT_EQ(Targets(steps), (std::vector<int32_t>{1, 5, 8, 10}));
  EXPECT_EQ(steps[0].weight, 10);
  EXPECT_EQ(steps[1].weight, -1);
  EXPECT_TRUE(steps[1].manual);
  EXPECT_EQ(steps[3].weight, -1);
  // A small weight still gets one instance.
  EXPECT_EQ(BuildSteps(spec, 3)[0].new_target, 1);
}

TEST(StepsTest, CapacityRoundsLikeKubernetes) {
  tidal::v1::RolloutSpec spec;
  Capacity c = ResolveCapacity(spec, 10);
  EXPECT_EQ(c.max_surge, 3);
  EXPECT_EQ(c.max_unavailable, 2);
  spec.set_max_surge("0");
  spec.set_max_unavailable("0");
  c = ResolveCapacity(spec, 10);
  EXPECT_EQ(c.max_unavailable, 1);  // progress needs one
  spec.set_max_surge("1");
  spec.set_max_unavailable("10%");
  c = ResolveCapacity(spec, 5);
  EXPECT_EQ(c.max_surge, 1);
  EXPECT_EQ(c.max_unavailable, 0);
}

}  // namespace
}  // namespace tidal::deployer
