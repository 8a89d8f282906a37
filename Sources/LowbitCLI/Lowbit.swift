import ArgumentParser
import Foundation
import LowbitCore
import LowbitDistributed
import LowbitONNX

/// The `lowbit` command: quantize, run and inspect ONNX models.
public struct Lowbit: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "lowbit",
    abstract: "Run and quantize ONNX models on the CPU.",
    discussion: """
      Data specs (--data): fashion-mnist:test | fashion-mnist:train[:N] (Debian's \
      dataset-fashion-mnist, normalized for the fm_* models), npy:inputs.npy[,labels.npy], \
      npy:NAME=a.npy,NAME2=b.npy[,labels=c.npy], npz:file.npz.
      """,
    version: lowbitCLIVersion,
    subcommands: [PTQCommand.self, DebugCommand.self, RunCommand.self, InfoCommand.self, OpsCommand.self, DemoCommand.self, SimplifyCommand.self, TrainCommand.self, QATCommand.self])

  public init() {}

  /// Parses and runs a command; lowbit's own errors print as `error: ...` and exit with 1.
  /// Under `mpirun` (see `Distributed`), MPI ends after the command, and a failing rank ends
  /// them all.
  public static func main() {
    setStartupEnvironment()
    Distributed.prepareThreads()
    do {
      var command = try parseAsRoot()
      try command.run()
      try Distributed.finish()
    } catch let error as LowbitError {
      FileHandle.standardError.write(Data("error: \(error)\(Distributed.rankNote)\n".utf8))
      Distributed.abort(exitCode: 1)
    } catch {
      if MPICollective.isActive {
        FileHandle.standardError.write(Data("error: \(error)\(Distributed.rankNote)\n".utf8))
        Distributed.abort(exitCode: 1)
      }
      exit(withError: error)
    }
  }
}

let lowbitCLIVersion = "0.1.0"

/// Sets `ProcessEnvironment.settings` (variables the C libraries read only when the process
/// starts) where the user has not, and re-executes once (a few milliseconds) when something had to
/// change. If re-executing fails, lowbit simply goes on with the defaults.
func setStartupEnvironment() {
  guard getenv("LOWBIT_NO_REEXEC") == nil else { return }
  var changed = false
  for (name, value) in ProcessEnvironment.settings where getenv(name) == nil {
    setenv(name, value, 1)
    changed = true
  }
  guard changed else { return }
  setenv("LOWBIT_NO_REEXEC", "1", 1)
  execv("/proc/self/exe", CommandLine.unsafeArgv)
}

/// Encodes a value as pretty, key-sorted JSON and writes it atomically.
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
  // An SQNR of identical values is infinite: written as a string, which JSON readers take.
  encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
  let data = try encoder.encode(value)
  if path == "-" {
    FileHandle.standardOutput.write(data + Data("\n".utf8))
  } else {
    try writeAtomically(data, to: path)
  }
}
