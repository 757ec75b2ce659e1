"""The Spark Connect server's profile: JFR's printed samples read back, each counted for one phase."""

from collections import Counter

from bench.spark_profile import PHASES, PLANNING, phase, stacks

PRINTED = """\
jdk.ExecutionSample {
  startTime = 03:54:03.269
  sampledThread = "SparkConnectExecuteThread_opId=610ad9c1" (javaThreadId = 520)
  state = "STATE_RUNNABLE"
  stackTrace = [
    org.apache.spark.sql.catalyst.expressions.Expression.childrenResolved() line: 311
    org.apache.spark.sql.catalyst.analysis.TypeCoercionRule.apply(LogicalPlan) line: 40
    org.apache.spark.sql.catalyst.rules.RuleExecutor.execute(TreeNode) line: 226
    org.apache.spark.sql.connect.planner.SparkConnectPlanner.handleCheckpointCommand(Relation) line: 3599
    ...
  ]
}

jdk.ExecutionSample {
  startTime = 03:54:03.357
  sampledThread = "Executor task launch worker for task 0.0" (javaThreadId = 610)
  state = "STATE_RUNNABLE"
  stackTrace = [
    org.postgresql.core.PGStream.receive(byte[], int, int) line: 140
    org.apache.spark.sql.execution.datasources.jdbc.JDBCRDD.compute(Partition, TaskContext) line: 300
    org.apache.spark.executor.Executor$TaskRunner.run() line: 620
  ]
}

jdk.ExecutionSample {
  startTime = 03:54:03.380
  sampledThread = "Executor task launch worker for task 1.0" (javaThreadId = 611)
  state = "STATE_RUNNABLE"
  stackTrace = [
    org.postgresql.shaded.com.ongres.scram.common.CryptoUtil.hi(SecretKeyFactory, int, char[]) line: 71
    org.postgresql.core.v3.ConnectionFactoryImpl.openConnectionImpl(HostSpec[], Properties) line: 288
    org.apache.spark.sql.execution.datasources.jdbc.JDBCRDD.compute(Partition, TaskContext) line: 270
  ]
}

jdk.ExecutionSample {
  startTime = 03:54:03.400
  sampledThread = "dag-scheduler-event-loop" (javaThreadId = 77)
  state = "STATE_RUNNABLE"
  stackTrace = [
    org.apache.spark.util.ClosureCleaner$.clean(Object, boolean, boolean) line: 100
    org.apache.spark.scheduler.DAGScheduler.submitMissingTasks(Stage, int) line: 1500
    org.apache.spark.util.EventLoop$$anon$1.run() line: 49
  ]
}

jdk.ExecutionSample {
  startTime = 03:54:03.420
  sampledThread = "grpc-default-executor-3" (javaThreadId = 81)
  state = "STATE_RUNNABLE"
  stackTrace = [
    java.util.HashMap.getNode(Object) line: 568
    io.grpc.internal.ServerImpl$JumpToApplicationThreadServerStreamListener.messagesAvailable() line: 1
  ]
}
"""


def test_each_sample_counts_for_the_first_phase_found_from_its_leaf_up():
    sampled = list(stacks(PRINTED))
    assert [len(frames) for frames in sampled] == [4, 3, 3, 3, 2]  # "..." is no frame
    assert sampled[1][0] == "org.postgresql.core.PGStream.receive"
    assert Counter(phase(frames) for frames in sampled) == {
        "analysis (Analyzer, CheckAnalysis)": 1,  # before the Connect planner below it
        "JDBC (PostgreSQL driver, reads and writes)": 1,  # before the task that runs it
        "PostgreSQL logins (SCRAM password hashing)": 1,  # before the driver that logs in
        "closure cleaning (class bytes read per job)": 1,  # before the scheduler
        "other": 1,
    }


def test_planning_names_phases_that_samples_count_for():
    assert set(PLANNING) <= {name for name, _ in PHASES}
