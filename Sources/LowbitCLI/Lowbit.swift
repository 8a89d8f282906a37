import ArgumentParser
import Foundation
import LowbitCore
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
    subcommands: [PTQCommand.self, RunCommand.self, InfoCommand.self, OpsCommand.self, DemoCommand.self, SimplifyCommand.self])

  public init() {}

  /// Parses and runs a command; lowbit's own errors print as `error: ...` and exit with 1.
  public static func main() {
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch let error as LowbitError {
      FileHandle.standardError.write(Data("error: \(error)\n".utf8))
      Foundation.exit(1)
    } catch {
      exit(withError: error)
    }
  }
}

let lowbitCLIVersion = "0.1.0"

/// Encodes a value as pretty, key-sorted JSON and writes it atomically.
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
  let data = try encoder.encode(value)
  if path == "-" {
    FileHandle.standardOutput.write(data + Data("\n".utf8))
  } else {
    try writeAtomically(data, to: path)
  }
}
