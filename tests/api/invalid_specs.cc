#include "invalid_specs.h"

namespace tidal::spec::testing {

std::string Spec(const std::string& body) {
  return std::string(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: hello
spec:
)") + body;
}

std::vector<InvalidRow> InvalidRows() {
  return {
      {"SyntaxUnclosedFlow", "apiVersion: tidal.dev/v1\nspec: [1,\n", 3, 1, "",
       "invalid YAML: end of sequence flow not found"},
      {"SyntaxBadIndent", Spec("  replicas: 1\n    template: {}\n"), 7, 13, "",
       "invalid YAML: illegal map value"},
      {"Empty", "", 0, 0, "", "no documents: the input is empty"},
      {"OnlyComments", "# nothing here\n\n", 0, 0, "",
       "no documents: the input is empty"},
      {"DocumentIsList", "- a\n- b\n", 1, 1, "",
       "a document must be a map with apiVersion, kind, metadata and spec, "
       "got a list"},
      {"DocumentIsScalar", "hello\n", 1, 1, "",
       "a document must be a map with apiVersion, kind, metadata and spec, "
       "got \"hello\""},
      {"WrongApiVersion",
       "apiVersion: v1\nkind: App\nmetadata: {name: a}\nspec:\n  template: "
       "{command: [x]}\n",
       1, 13, "apiVersion", "must be \"tidal.dev/v1\", got \"v1\""},
      {"MissingApiVersion",
       "kind: App\nmetadata: {name: a}\nspec:\n  template: {command: [x]}\n", 1,
       1, "apiVersion", "required: tidal.dev/v1"},
      {"WrongKind",
       "apiVersion: tidal.dev/v1\nkind: Deployment\nmetadata: {name: a}\n"
       "spec:\n  template: {command: [x]}\n",
       2, 7, "kind", "must be \"App\", got \"Deployment\""},
      {"MissingName",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  labels: {a: b}\n"
       "spec:\n  template: {command: [x]}\n",
       3, 1, "metadata.name", "required"},
      {"NameNotDns",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: Hello_World\n"
       "spec:\n  template: {command: [x]}\n",
       4, 9, "metadata.name",
       "must be a DNS-1123 label (at most 63 lowercase letters, digits and "
       "'-', starting and ending with a letter or digit), got "
       "\"Hello_World\""},
      {"NameTooLong",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: " +
           std::string(64, 'a') + "\nspec:\n  template: {command: [x]}\n",
       4, 9, "metadata.name",
       "must be a DNS-1123 label (at most 63 lowercase letters, digits and "
       "'-', starting and ending with a letter or digit), got \"" +
           std::string(60, 'a') + "...\""},
      {"NamespaceNotDns",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: a\n"
       "  namespace: team-\nspec:\n  template: {command: [x]}\n",
       5, 14, "metadata.namespace",
       "must be a DNS-1123 label (at most 63 lowercase letters, digits and "
       "'-', starting and ending with a letter or digit), got \"team-\""},
      {"BadLabelKey",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: a\n"
       "  labels:\n    -bad: x\nspec:\n  template: {command: [x]}\n",
       6, 5, "metadata.labels.-bad",
       "\"-bad\" is not a valid key: a name of at most 63 letters, digits, "
       "'-', '_' and '.' (starting and ending with a letter or digit), "
       "optionally prefixed by a DNS subdomain and '/'"},
      {"BadLabelValue",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: a\n"
       "  labels:\n    team: \"a b\"\nspec:\n  template: {command: [x]}\n",
       6, 5, "metadata.labels.team",
       "invalid value \"a b\": at most 63 letters, digits, '-', '_' and '.', "
       "starting and ending with a letter or digit (or empty)"},
      {"UnknownTopLevel",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata: {name: a}\nspecs:\n"
       "  template: {command: [x]}\n",
       4, 1, "specs", "unknown field (did you mean \"spec\"?)"},
      {"UnknownFieldTypo", Spec("  template:\n    comand: [app]\n"), 7, 5,
       "spec.template.comand", "unknown field (did you mean \"command\"?)"},
      {"UnknownFieldSnakeCase",
       Spec("  template:\n    command: [app]\n    working_dir: /tmp\n"), 8, 5,
       "spec.template.working_dir",
       "unknown field (did you mean \"workingDir\"?)"},
      {"MisplacedField",
       Spec("  template:\n    command: [app]\n    minReplicas: 2\n"), 8, 5,
       "spec.template.minReplicas",
       "unknown field here (minReplicas belongs under spec.scaling or "
       "spec.scaling.schedules[])"},
      // Next to `replicas`, minReplicas is still spec.scaling's, not a typo.
      {"MisplacedFieldNearAKnownOne",
       Spec("  minReplicas: 1\n  template:\n    command: [app]\n"), 6, 3,
       "spec.minReplicas",
       "unknown field here (minReplicas belongs under spec.scaling or "
       "spec.scaling.schedules[])"},
      {"UnknownFieldNoSuggestion",
       Spec("  template:\n    command: [app]\n  zzzzzz: 1\n"), 8, 3,
       "spec.zzzzzz",
       "unknown field (known fields: replicas, template, scaling, rollout, "
       "webhooks)"},
      {"ReplicasNotInteger",
       Spec("  replicas: three\n  template: {command: [x]}\n"), 6, 13,
       "spec.replicas", "must be an integer, got \"three\""},
      {"ReplicasQuoted",
       Spec("  replicas: \"3\"\n  template: {command: [x]}\n"), 6, 13,
       "spec.replicas",
       "must be an integer, got the string \"3\" (remove the quotes)"},
      {"ReplicasFraction",
       Spec("  replicas: 1.5\n  template: {command: [x]}\n"), 6, 13,
       "spec.replicas", "must be an integer, got \"1.5\""},
      {"ReplicasNegative", Spec("  replicas: -1\n  template: {command: [x]}\n"),
       6, 13, "spec.replicas", "must not be negative, got -1"},
      {"ReplicasOverflow",
       Spec("  replicas: 99999999999\n  template: {command: [x]}\n"), 6, 13,
       "spec.replicas",
       "must be between -2147483648 and 2147483647, got 99999999999"},
      {"ReplicasList", Spec("  replicas: [1]\n  template: {command: [x]}\n"), 6,
       13, "spec.replicas", "must be an integer, got a list"},
      {"DuplicateField",
       Spec("  replicas: 1\n  replicas: 2\n  template: {command: [x]}\n"), 7, 3,
       "spec.replicas", "duplicate field (first at line 6)"},
      {"MissingTemplate", Spec("  replicas: 1\n"), 5, 1,
       "spec.template.command",
       "required: the program to run and its fixed arguments, e.g. "
       "[\"tidal-sample-app\"]"},
      {"EmptyCommand", Spec("  template:\n    command: []\n"), 7, 5,
       "spec.template.command",
       "required: the program to run and its fixed arguments, e.g. "
       "[\"tidal-sample-app\"]"},
      {"NullCommand", Spec("  template:\n    command:\n    args: [a]\n"), 7, 5,
       "spec.template.command",
       "required: the program to run and its fixed arguments, e.g. "
       "[\"tidal-sample-app\"]"},
      {"CommandString", Spec("  template:\n    command: tidal-sample-app\n"), 7,
       14, "spec.template.command", "must be a list, got \"tidal-sample-app\""},
      {"CommandEmptyProgram", Spec("  template:\n    command: [\"\", x]\n"), 7,
       15, "spec.template.command[0]",
       "must not be empty (the program to run)"},
      {"EnvListMissingName",
       Spec("  template:\n    command: [x]\n    env:\n    - name: A\n"
            "      value: \"1\"\n    - value: \"2\"\n"),
       11, 7, "spec.template.env[1].name", "required"},
      {"EnvBadName",
       Spec("  template:\n    command: [x]\n    env:\n      A: 1\n      B: 2\n"
            "      9LIVES: 3\n"),
       11, 7, "spec.template.env[2].name",
       "must be letters, digits, '_', '-' and '.', not starting with a digit, "
       "got \"9LIVES\""},
      {"EnvDuplicateName",
       Spec("  template:\n    command: [x]\n    env:\n    - {name: A, value: "
            "x}\n    - {name: A, value: y}\n"),
       10, 14, "spec.template.env[1].name",
       "duplicate name \"A\" (also env[0])"},
      {"EnvPortReserved",
       Spec("  template:\n    command: [x]\n    env:\n      PORT: \"80\"\n"), 9,
       7, "spec.template.env[0].name",
       "PORT is reserved: tidal sets it to the port the instance must listen "
       "on"},
      {"EnvScalar", Spec("  template:\n    command: [x]\n    env: A=1\n"), 8,
       10, "spec.template.env",
       "must be a map of name to value (or a list of {name, value}), got "
       "\"A=1\""},
      {"ProbeBoth",
       Spec("  template:\n    command: [x]\n    readinessProbe:\n"
            "      httpGet: {path: /healthz}\n      tcpSocket: {}\n"),
       8, 5, "spec.template.readinessProbe",
       "must set exactly one of httpGet or tcpSocket, not both"},
      {"ProbeNeither",
       Spec("  template:\n    command: [x]\n    livenessProbe:\n"
            "      periodSeconds: 5\n"),
       8, 5, "spec.template.livenessProbe",
       "must set exactly one of httpGet or tcpSocket"},
      {"ProbePortRange",
       Spec("  template:\n    command: [x]\n    readinessProbe:\n"
            "      tcpSocket: {port: 70000}\n"),
       9, 25, "spec.template.readinessProbe.tcpSocket.port",
       "must be between 1 and 65535 (0 or unset: the instance's own port), got "
       "70000"},
      {"ProbePathRelative",
       Spec("  template:\n    command: [x]\n    readinessProbe:\n"
            "      httpGet: {path: healthz}\n"),
       9, 23, "spec.template.readinessProbe.httpGet.path",
       "must start with '/', got \"healthz\""},
      {"ProbePeriodZero",
       Spec("  template:\n    command: [x]\n    readinessProbe:\n"
            "      httpGet: {path: /}\n      periodSeconds: 0\n"),
       10, 22, "spec.template.readinessProbe.periodSeconds",
       "must be at least 1, got 0"},
      {"LivenessSuccessThreshold",
       Spec("  template:\n    command: [x]\n    livenessProbe:\n"
            "      httpGet: {path: /}\n      successThreshold: 2\n"),
       10, 25, "spec.template.livenessProbe.successThreshold",
       "must be 1 for a liveness probe, got 2"},
      {"GracePeriodDuration",
       Spec("  template:\n    command: [x]\n    terminationGracePeriodSeconds: "
            "30s\n"),
       8, 36, "spec.template.terminationGracePeriodSeconds",
       "must be an integer, got \"30s\""},
      {"BadMemory",
       Spec("  template:\n    command: [x]\n    resources: {memory: 256MB}\n"),
       8, 25, "spec.template.resources.memory",
       "must be a byte quantity like \"256Mi\", \"1Gi\", \"500M\" or \"1024\" "
       "(suffixes: k, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei), got "
       "\"256MB\""},
      {"BadCpu",
       Spec("  template:\n    command: [x]\n    resources: {cpu: lots}\n"), 8,
       22, "spec.template.resources.cpu",
       "must be a CPU quantity like \"500m\", \"1\" or \"1.5\", got \"lots\""},
      {"BadProtocol",
       Spec("  template:\n    command: [x]\n    protocol: http3\n"), 8, 15,
       "spec.template.protocol",
       "must be one of http1, h2c, grpc; got \"http3\""},
      {"ZeroTimeout",
       Spec("  template:\n    command: [x]\n    timeoutSeconds: 0\n"), 8, 21,
       "spec.template.timeoutSeconds", "must be at least 1, got 0"},
      {"IdleTimeoutTooLong",
       Spec("  template:\n    command: [x]\n    idleTimeoutSeconds: 86401\n"),
       8, 25, "spec.template.idleTimeoutSeconds",
       "must be at most 86400, got 86401"},
      {"MinAboveMax",
       Spec("  template: {command: [x]}\n  scaling:\n    minReplicas: 5\n"
            "    maxReplicas: 3\n"),
       8, 18, "spec.scaling.minReplicas", "must be <= maxReplicas (5 > 3)"},
      {"BadMetric",
       Spec("  template: {command: [x]}\n  scaling:\n    metric: qps\n"), 8, 13,
       "spec.scaling.metric",
       "must be one of concurrency, rps, cpu, memory; got \"qps\""},
      {"BadAlgorithm",
       Spec("  template: {command: [x]}\n  scaling:\n    algorithm: knative\n"),
       8, 16, "spec.scaling.algorithm",
       "must be one of tidal, kpa, hpa, keepalive, hybrid; got \"knative\""},
      {"DurationBareNumber",
       Spec("  template: {command: [x]}\n  scaling:\n    stableWindow: 30\n"),
       8, 19, "spec.scaling.stableWindow",
       "must be a duration like \"30s\", \"5m\", \"250ms\" or \"1h30m\" (a "
       "number needs a unit: ms, s, m or h), got \"30\""},
      {"DurationUnknownUnit",
       Spec("  template: {command: [x]}\n  scaling:\n"
            "    scaleToZeroGracePeriod: 5x\n"),
       8, 29, "spec.scaling.scaleToZeroGracePeriod",
       "must be a duration like \"30s\", \"5m\", \"250ms\" or \"1h30m\" "
       "(unknown unit \"x\"; use ms, s, m or h), got \"5x\""},
      {"StableWindowTooShort",
       Spec("  template: {command: [x]}\n  scaling:\n    stableWindow: 2s\n"),
       8, 19, "spec.scaling.stableWindow", "must be between 6s and 1h, got 2s"},
      {"TargetUtilizationZero",
       Spec("  template: {command: [x]}\n  scaling:\n"
            "    targetUtilization: 0\n"),
       8, 24, "spec.scaling.targetUtilization",
       "must be between 1 and 100, got 0"},
      {"ReplicasConflictWithScaling",
       Spec("  replicas: 10\n  template: {command: [x]}\n  scaling:\n"
            "    minReplicas: 1\n    maxReplicas: 5\n"),
       6, 13, "spec.replicas",
       "conflicts with spec.scaling: 10 > maxReplicas 5 (set replicas within "
       "minReplicas..maxReplicas, or only one of them)"},
      {"CronHourOutOfRange",
       Spec("  template: {command: [x]}\n  scaling:\n    schedules:\n"
            "    - name: evening\n      cron: \"0 25 * * *\"\n"
            "      duration: 4h\n      minReplicas: 20\n"),
       10, 13, "spec.scaling.schedules[0].cron",
       "invalid cron expression \"0 25 * * *\": hour field \"25\": 25 is out "
       "of range 0-23"},
      {"CronFieldCount",
       Spec("  template: {command: [x]}\n  scaling:\n    schedules:\n"
            "    - cron: \"0 19 * *\"\n      duration: 4h\n"
            "      minReplicas: 20\n"),
       9, 13, "spec.scaling.schedules[0].cron",
       "invalid cron expression \"0 19 * *\": must have 5 fields (minute hour "
       "day-of-month month day-of-week), got 4"},
      {"UnknownTimeZone",
       Spec("  template: {command: [x]}\n  scaling:\n    schedules:\n"
            "    - cron: \"0 19 * * *\"\n      timeZone: Asia/Atlantis\n"
            "      duration: 4h\n      minReplicas: 20\n"),
       10, 17, "spec.scaling.schedules[0].timeZone",
       "unknown time zone \"Asia/Atlantis\" (use an IANA name like \"UTC\", "
       "\"Europe/Berlin\" or \"Asia/Shanghai\")"},
      {"ScheduleWithoutDuration",
       Spec("  template: {command: [x]}\n  scaling:\n    schedules:\n"
            "    - cron: \"0 19 * * *\"\n      minReplicas: 20\n"),
       9, 7, "spec.scaling.schedules[0].duration",
       "required: how long the schedule holds, e.g. \"4h\""},
      {"BehaviorPolicyType",
       Spec("  template: {command: [x]}\n  scaling:\n    behavior:\n"
            "      scaleUp:\n        policies:\n"
            "        - {type: Instances, value: 4, periodSeconds: 15}\n"),
       11, 18, "spec.scaling.behavior.scaleUp.policies[0].type",
       "must be one of Pods, Percent; got \"Instances\""},
      {"BehaviorToleranceNegative",
       Spec("  template: {command: [x]}\n  scaling:\n    behavior:\n"
            "      scaleDown:\n        tolerance: -0.5\n"),
       10, 20, "spec.scaling.behavior.scaleDown.tolerance",
       "must be between 0 and 10, got -0.5"},
      {"PredictiveEnabledNotBool",
       Spec("  template: {command: [x]}\n  scaling:\n    predictive:\n"
            "      enabled: maybe\n"),
       9, 16, "spec.scaling.predictive.enabled",
       "must be true or false, got \"maybe\""},
      {"BadStrategy",
       Spec(
           "  template: {command: [x]}\n  rollout:\n    strategy: bluegreen\n"),
       8, 15, "spec.rollout.strategy",
       "must be one of batch, canary; got \"bluegreen\""},
      {"BadSupersede",
       Spec("  template: {command: [x]}\n  rollout:\n    supersede: resume\n"),
       8, 16, "spec.rollout.supersede",
       "must be one of restart, continue; got \"resume\""},
      {"CanaryWeightsNotIncreasing",
       Spec("  template: {command: [x]}\n  rollout:\n    strategy: canary\n"
            "    steps:\n    - {weight: 50, pause: 5m}\n"
            "    - {weight: 30, pause: manual}\n"),
       11, 16, "spec.rollout.steps[1].weight",
       "must be greater than steps[0].weight (30 <= 50)"},
      {"CanaryWeightAbove100",
       Spec("  template: {command: [x]}\n  rollout:\n    strategy: canary\n"
            "    steps:\n    - weight: 120\n"),
       10, 15, "spec.rollout.steps[0].weight",
       "must be between 1 and 100, got 120"},
      {"StepsWithoutCanary",
       Spec("  template: {command: [x]}\n  rollout:\n    steps:\n"
            "    - weight: 10\n"),
       8, 5, "spec.rollout.steps", "steps need strategy: canary"},
      {"StepPauseBad",
       Spec("  template: {command: [x]}\n  rollout:\n    strategy: canary\n"
            "    steps:\n    - {weight: 10, pause: later}\n"),
       10, 27, "spec.rollout.steps[0].pause",
       "must be manual or must be a duration like \"30s\", \"5m\", \"250ms\" "
       "or \"1h30m\", got \"later\""},
      {"MaxUnavailablePercent",
       Spec("  template: {command: [x]}\n  rollout:\n"
            "    maxUnavailable: 150%\n"),
       8, 21, "spec.rollout.maxUnavailable",
       "must be a non-negative integer or a percentage like \"25%\", got "
       "\"150%\""},
      {"BatchesAndBatchSize",
       Spec("  template: {command: [x]}\n  rollout:\n    batches: 5\n"
            "    batchSize: 2\n"),
       9, 16, "spec.rollout.batchSize",
       "set either batches or batchSize, not both"},
      {"MaxErrorRateTooHigh",
       Spec("  template: {command: [x]}\n  rollout:\n    analysis:\n"
            "      maxErrorRate: 150%\n"),
       9, 21, "spec.rollout.analysis.maxErrorRate",
       "must be a fraction between 0 and 1 (or a percentage like \"5%\"), got "
       "1.5"},
      {"InconclusiveBad",
       Spec("  template: {command: [x]}\n  rollout:\n    analysis:\n"
            "      inconclusive: maybe\n"),
       9, 21, "spec.rollout.analysis.inconclusive",
       "must be one of fail, pass; got \"maybe\""},
      {"WebhookType",
       Spec("  template: {command: [x]}\n  webhooks:\n  - name: gate\n"
            "    type: pre-deploy\n    url: https://ci.example.com/hook\n"),
       9, 11, "spec.webhooks[0].type",
       "must be one of pre-rollout, confirm-promotion, post-rollout, "
       "rollback; got \"pre-deploy\""},
      {"WebhookUrl",
       Spec("  template: {command: [x]}\n  webhooks:\n  - name: gate\n"
            "    type: rollback\n    url: ftp://example.com\n"),
       10, 10, "spec.webhooks[0].url",
       "must be an http:// or https:// URL with a host, got "
       "\"ftp://example.com\""},
      {"RolloutPauseAndBatchInterval",
       Spec("  template: {command: [x]}\n  rollout:\n    batchInterval: 10s\n"
            "    pause: 30s\n"),
       9, 12, "spec.rollout.pause",
       "a pause duration is the batchInterval: set one of them"},
      {"StatusTimestampBad",
       Spec("  template: {command: [x]}\n") +
           "status:\n  conditions:\n  - type: Ready\n"
           "    lastTransitionTime: yesterday\n",
       10, 25, "status.conditions[0].lastTransitionTime",
       "must be an RFC 3339 time like \"2024-05-01T12:00:00Z\", got "
       "\"yesterday\""},
      {"LabelsNotAMap",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: a\n"
       "  labels: [a, b]\nspec:\n  template: {command: [x]}\n",
       5, 11, "metadata.labels", "must be a map, got a list"},
      {"MetadataIsList",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n- name: a\nspec:\n"
       "  template: {command: [x]}\n",
       4, 1, "metadata", "must be a map, got a list"},
      // Bounds (api/limits.h, docs/spec.md "Limits"), with tidald's
      // default server options (DefaultServerOptions).
      {"ReplicasAbovePerAppMaximum",
       Spec("  replicas: 2147483647\n  template: {command: [x]}\n"), 6, 13,
       "spec.replicas",
       "2147483647 exceeds the per-app maximum of 1000 instances (tidald "
       "--max-instances-per-app)"},
      {"MaxReplicasAbovePerAppMaximum",
       Spec("  template: {command: [x]}\n  scaling:\n    maxReplicas: 5000\n"),
       8, 18, "spec.scaling.maxReplicas",
       "5000 exceeds the per-app maximum of 1000 instances (tidald "
       "--max-instances-per-app)"},
      {"MinReplicasAbovePerAppMaximum",
       Spec("  template: {command: [x]}\n  scaling:\n    minReplicas: 1001\n"),
       8, 18, "spec.scaling.minReplicas",
       "1001 exceeds the per-app maximum of 1000 instances (tidald "
       "--max-instances-per-app)"},
      {"ScheduleMinReplicasAbovePerAppMaximum",
       Spec("  template: {command: [x]}\n  scaling:\n    schedules:\n"
            "    - cron: \"0 19 * * *\"\n      duration: 4h\n"
            "      minReplicas: 100000\n"),
       11, 20, "spec.scaling.schedules[0].minReplicas",
       "100000 exceeds the per-app maximum of 1000 instances (tidald "
       "--max-instances-per-app)"},
      {"CanaryStepReplicasAbovePerAppMaximum",
       Spec("  template: {command: [x]}\n  rollout:\n    strategy: canary\n"
            "    steps:\n    - replicas: 100000\n"),
       10, 17, "spec.rollout.steps[0].replicas",
       "100000 exceeds the per-app maximum of 1000 instances (tidald "
       "--max-instances-per-app)"},
      {"TerminationGracePeriodTooLong",
       Spec("  template:\n    command: [x]\n"
            "    terminationGracePeriodSeconds: 2147483647\n"),
       8, 36, "spec.template.terminationGracePeriodSeconds",
       "must be at most 3600, got 2147483647"},
      {"BatchIntervalTooLong",
       Spec("  template: {command: [x]}\n  rollout:\n"
            "    batchInterval: 9223372036854775807ms\n"),
       8, 20, "spec.rollout.batchInterval",
       "must be at most 24h, got 2562047788015h12m55.807s"},
      {"ProbePeriodTooLong",
       Spec("  template:\n    command: [x]\n    readinessProbe:\n"
            "      httpGet: {path: /}\n      periodSeconds: 2147483647\n"),
       10, 22, "spec.template.readinessProbe.periodSeconds",
       "must be at most 3600, got 2147483647"},
      {"ProbeFailureThresholdTooHigh",
       Spec("  template:\n    command: [x]\n    livenessProbe:\n"
            "      tcpSocket: {}\n      failureThreshold: 1000000\n"),
       10, 25, "spec.template.livenessProbe.failureThreshold",
       "must be at most 1000, got 1000000"},
      {"ProgressDeadlineTooLong",
       Spec("  template: {command: [x]}\n  rollout:\n"
            "    progressDeadline: 1000h\n"),
       8, 23, "spec.rollout.progressDeadline",
       "must be at most 24h, got 1000h"},
      {"AnalysisIntervalTooLong",
       Spec("  template: {command: [x]}\n  rollout:\n    analysis:\n"
            "      interval: 2h\n"),
       9, 17, "spec.rollout.analysis.interval", "must be at most 1h, got 2h"},
      {"MaxSurgeTooLarge",
       Spec(
           "  template: {command: [x]}\n  rollout:\n    maxSurge: 999999999\n"),
       8, 15, "spec.rollout.maxSurge", "must be at most 100000, got 999999999"},
      {"HistoryLimitTooLarge",
       Spec("  template: {command: [x]}\n  rollout:\n    historyLimit: "
            "100000\n"),
       8, 19, "spec.rollout.historyLimit", "must be at most 1000, got 100000"},
      {"ScaleToZeroGracePeriodTooLong",
       Spec("  template: {command: [x]}\n  scaling:\n"
            "    scaleToZeroGracePeriod: 48h\n"),
       8, 29, "spec.scaling.scaleToZeroGracePeriod",
       "must be at most 24h, got 48h"},
      {"TargetTooLarge",
       Spec("  template: {command: [x]}\n  scaling:\n    target: 1e300\n"), 8,
       13, "spec.scaling.target", "must be at most 1000000, got 1e+300"},
      {"WebhookTimeoutTooLong",
       Spec("  template: {command: [x]}\n  webhooks:\n  - name: gate\n"
            "    type: rollback\n    url: https://ci.example.com/hook\n"
            "    timeout: 1h\n"),
       11, 14, "spec.webhooks[0].timeout", "must be at most 5m, got 1h"},
      {"TooManySchedules",
       [] {
         std::string body =
             "  template: {command: [x]}\n  scaling:\n"
             "    schedules:\n";
         for (int i = 0; i < 101; ++i)
           body +=
               "    - {cron: \"0 1 * * *\", duration: 1h, minReplicas: 1}\n";
         return Spec(body);
       }(),
       8, 5, "spec.scaling.schedules",
       "must have at most 100 entries, got 101"},
      {"TooManyLabels",
       [] {
         std::string y =
             "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n"
             "  name: a\n  labels:\n";
         for (int i = 0; i < 65; ++i)
           y += "    l" + std::to_string(i) + ": v\n";
         return y + "spec:\n  template: {command: [x]}\n";
       }(),
       5, 3, "metadata.labels", "must have at most 64 entries, got 65"},
      {"TooManyEnv",
       [] {
         std::string body = "  template:\n    command: [x]\n    env:\n";
         for (int i = 0; i < 1025; ++i)
           body += "      V" + std::to_string(i) + ": x\n";
         return Spec(body);
       }(),
       8, 5, "spec.template.env", "must have at most 1024 entries, got 1025"},
      {"ArgTooLong",
       Spec("  template:\n    command: [x]\n    args: [" +
            std::string(128 * 1024, 'a') + "]\n"),
       8, 12, "spec.template.args[0]",
       "must be at most 131071 bytes, got 131072"},
      // NUL bytes: exec would cut the string there.
      {"NulInCommand", Spec("  template: {command: [\"/bin/sh\\0-c\"]}\n"), 6,
       24, "spec.template.command[0]",
       "must not contain a NUL byte (found at byte 7; the string would be "
       "cut there)"},
      {"NulInArgs",
       Spec("  template:\n    command: [x]\n    args: [ok, \"rm\\0-rf\"]\n"), 8,
       16, "spec.template.args[1]",
       "must not contain a NUL byte (found at byte 2; the string would be "
       "cut there)"},
      {"NulInEnvValue",
       Spec("  template:\n    command: [x]\n    env:\n      MODE: "
            "\"safe\\0x\"\n"),
       9, 13, "spec.template.env[0].value",
       "must not contain a NUL byte (found at byte 4; the string would be "
       "cut there)"},
      {"NulInWorkingDir",
       Spec("  template:\n    command: [x]\n    workingDir: \"/srv\\0/x\"\n"),
       8, 17, "spec.template.workingDir",
       "must not contain a NUL byte (found at byte 4; the string would be "
       "cut there)"},
      {"NulInAnnotation",
       "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: a\n"
       "  annotations:\n    note: \"a\\0b\"\nspec:\n  template: {command: "
       "[x]}\n",
       6, 5, "metadata.annotations.note",
       "must not contain a NUL byte (found at byte 1; the string would be "
       "cut there)"},
      // Webhook targets: tidald refuses private addresses by default
      // (--allow-private-webhooks); literal ones already at apply.
      {"WebhookLoopbackAddress",
       Spec("  template: {command: [x]}\n  webhooks:\n  - name: gate\n"
            "    type: pre-rollout\n"
            "    url: http://127.0.0.1:9090/internal-admin/x\n"),
       10, 10, "spec.webhooks[0].url",
       "127.0.0.1 is a loopback address; this tidald refuses private webhook "
       "targets (tidald --allow-private-webhooks)"},
      {"WebhookMetadataAddress",
       Spec("  template: {command: [x]}\n  webhooks:\n  - name: n\n"
            "    type: rollback\n"
            "    url: http://169.254.169.254/latest/meta-data/\n"),
       10, 10, "spec.webhooks[0].url",
       "169.254.169.254 is a link-local address; this tidald refuses private "
       "webhook targets (tidald --allow-private-webhooks)"},
      {"WebhookMappedIpv6Loopback",
       Spec("  template: {command: [x]}\n  webhooks:\n  - name: n\n"
            "    type: rollback\n    url: \"http://[::ffff:127.0.0.1]:80/\"\n"),
       10, 10, "spec.webhooks[0].url",
       "::ffff:127.0.0.1 is a loopback address; this tidald refuses private "
       "webhook targets (tidald --allow-private-webhooks)"},
      {"WebhookShortIpv4Loopback",
       Spec("  template: {command: [x]}\n  webhooks:\n  - name: n\n"
            "    type: rollback\n    url: http://user@127.1/\n"),
       10, 10, "spec.webhooks[0].url",
       "127.1 is a loopback address; this tidald refuses private webhook "
       "targets (tidald --allow-private-webhooks)"},
      {"DuplicateAppInFile",
       Spec("  template: {command: [x]}\n") + "---\n" +
           Spec("  template: {command: [y]}\n"),
       11, 9, "metadata.name",
       "duplicate app \"default/hello\" (also defined at line 1)"},
  };
}

}  // namespace tidal::spec::testing
