import CBLAS
import Foundation
import LowbitCore
import LowbitTestSupport
import Testing

/// The tests run the kernels under the OpenBLAS and malloc set-up of the `lowbit` command.
@Suite struct ProcessEnvironmentTests {
  /// `make test` starts the test processes with `ProcessEnvironment.settings` (and
  /// LOWBIT_CLI_ENV=1); this fails when the Makefile's copy drifts from the command's.
  @Test(.enabled(if: ProcessInfo.processInfo.environment["LOWBIT_CLI_ENV"] != nil))
  func testsRunUnderTheCommandsEnvironment() {
    let env = ProcessInfo.processInfo.environment
    for (name, value) in ProcessEnvironment.settings {
      #expect(env[name] == value, "\(name)")
    }
  }

  /// Whatever the environment, lowbit's first sgemm leaves OpenBLAS single-threaded.
  @Test func openBLASRunsOneThreadPerCall() throws {
    _ = try runKernel("MatMul", [randomTensor([4, 3], seed: 1), randomTensor([3, 2], seed: 2)])
    #expect(openblas_get_num_threads() == 1)
  }
}
