import Foundation
import LowbitCore
import LowbitDistributed
import LowbitTrain

/// Data-parallel runs: the same `lowbit` command under `mpirun -np K` runs K ranks that train
/// one model together (`TrainingLoop`'s collective). A command that trains:
///
/// 1. gets the collective with `Distributed.collective()` (MPI only when an MPI launcher started
///    the process, else `SingleProcess()`; the plain binary never needs `mpirun`);
/// 2. passes it to `TrainingLoop(graph:training:config:collective:)` (or `resuming:`), and to
///    `broadcastInitializers(of:)` / `allreduce(_:_:)` for any state it prepares itself (e.g.
///    calibrated quantizer ranges: reduce min/max across ranks, or broadcast rank 0's graph);
/// 3. prints, shows progress and writes files only when `collective.isRoot`.
///
/// `Lowbit.main` does the rest: `prepareThreads()` before any kernel runs, `finish()` after the
/// command, `abort(exitCode:)` when a command fails (the other ranks may be waiting for it).
enum Distributed {
  /// The collective of this process: `MPICollective.shared()` when an MPI launcher started it
  /// (`MPILaunch.isLaunched`), else `SingleProcess()`.
  static func collective() throws -> any Collective {
    MPILaunch.isLaunched(environment: ProcessInfo.processInfo.environment) ? try MPICollective.shared() : SingleProcess()
  }

  /// Sets the kernels' thread count (`KernelThreads`): `LOWBIT_THREADS` when it is a positive
  /// number; else, under an MPI launcher, a number that lets the ranks on one machine share
  /// its cores instead of each using all of them: the CPUs this process may run on when the
  /// launcher bound it to fewer than the machine has (OpenMPI binds to a core for up to 2 ranks;
  /// `--bind-to none` lifts that), else the machine's CPUs divided by the local rank count.
  /// Runs before any kernel.
  static func prepareThreads() {
    let environment = ProcessInfo.processInfo.environment
    if let text = environment["LOWBIT_THREADS"], let n = Int(text), n > 0 {
      KernelThreads.set(n)
      return
    }
    guard MPILaunch.isLaunched(environment: environment) else { return }
    let online = max(1, ProcessInfo.processInfo.activeProcessorCount)
    let threads: Int
    if let allowed = allowedCPUCount(), allowed < online {
      threads = allowed
    } else {
      threads = online / (MPILaunch.localSize(environment: environment) ?? 1)
    }
    KernelThreads.set(threads)
  }

  /// The CPUs in this process's affinity mask (`Cpus_allowed` of /proc/self/status), if readable.
  static func allowedCPUCount() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
    else { return nil }
    let mask = line.dropFirst("Cpus_allowed:".count).filter { $0.isHexDigit }
    let count = mask.reduce(0) { $0 + ($1.hexDigitValue ?? 0).nonzeroBitCount }
    return count > 0 ? count : nil
  }

  /// Ends MPI after a command succeeded (no-op for a single process).
  static func finish() throws {
    try MPICollective.finalize()
  }

  /// ` (rank R of K)` when MPI runs with several ranks, else empty: appended to error messages.
  static var rankNote: String {
    guard MPICollective.isActive, let c = try? MPICollective.shared(), c.size > 1 else { return "" }
    return " (rank \(c.rank) of \(c.size))"
  }

  /// After a failure: ends every rank when MPI runs (they may be blocked in a collective call
  /// waiting for this one), else exits with `exitCode`.
  static func abort(exitCode: Int32) -> Never {
    MPICollective.abort(exitCode: exitCode)
  }

  /// The bytes of the file at `path` as rank 0 reads them, on every rank (files such as a
  /// checkpoint to resume need exist only on rank 0's machine). Collective.
  static func rootReads(_ path: String, what: String, collective: any Collective) throws -> [UInt8] {
    var bytes: [UInt8] = []
    if collective.isRoot {
      guard let data = FileManager.default.contents(atPath: path) else {
        throw LowbitError.io("\(what) '\(path)' cannot be read (no such file, or not readable)")
      }
      bytes = [UInt8](data)
    }
    try collective.broadcast(&bytes, root: 0)
    return bytes
  }
}
