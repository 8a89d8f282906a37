import Foundation
import Synchronization
import LowbitCore
import LowbitTestSupport
import Testing

@testable import LowbitONNX

/// Corrupted, truncated and lying files end in a LowbitError or a working model, never a trap.
@Suite struct HostileFileTests {
  static let original: Data = FileManager.default.contents(atPath: demoModelPath("fm_resnet20"))!

  /// Loads, simplifies and runs one image; any failure must be a LowbitError.
  ///
  /// Runs on a thread with a 64 MiB stack, as the CLI's main thread has 8 MiB: unoptimized
  /// (debug) builds of the decoder and interpreter use large frames, and Swift Testing's
  /// cooperative threads have small stacks (a debug run overflowed there under a full parallel
  /// suite; the same cases pass under AddressSanitizer and in release builds).
  func exercise(_ data: Data) -> String {
    let outcome = Outcome()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
      let result = self.exerciseNow(data)
      outcome.value.withLock { $0 = result }
      done.signal()
    }
    thread.stackSize = 64 << 20
    thread.start()
    done.wait()
    return outcome.value.withLock { $0 }
  }

  /// What the worker thread of `exercise` hands back.
  private final class Outcome: Sendable {
    let value = Mutex("")
  }

  func exerciseNow(_ data: Data) -> String {
    do {
      let graph = try ONNXReader.decode(data).simplified()
      let interpreter = try Interpreter(graph)
      guard let input = graph.inputs.first else { return "no input" }
      _ = try interpreter.run([input.name: Tensor(shape: [1, 1, 28, 28], repeating: 0.5)])
      return "ran"
    } catch let error as LowbitError {
      #expect(!error.message.isEmpty)
      return "error"
    } catch {
      Issue.record("not a LowbitError: \(error)")
      return "other"
    }
  }

  @Test func truncatedFilesAreRefused() {
    var generator = SeededGenerator(seed: 7)
    var outcomes: [String: Int] = [:]
    for _ in 0..<60 {
      let cut = Int.random(in: 0..<Self.original.count, using: &generator)
      outcomes[exercise(Self.original.prefix(cut)), default: 0] += 1
    }
    #expect(outcomes["other"] == nil)
    #expect((outcomes["error"] ?? 0) >= 55)
  }

  @Test func flippedBytesNeverCrash() {
    var generator = SeededGenerator(seed: 11)
    var outcomes: [String: Int] = [:]
    // Corrupt the structural head of the file more often than the weight payload.
    for round in 0..<300 {
      var data = Self.original
      let span = round % 2 == 0 ? min(4096, data.count) : data.count
      for _ in 0..<Int.random(in: 1...6, using: &generator) {
        let at = Int.random(in: 0..<span, using: &generator)
        data[at] = UInt8.random(in: 0...255, using: &generator)
      }
      outcomes[exercise(data), default: 0] += 1
    }
    #expect(outcomes["other"] == nil)
    #expect((outcomes["error"] ?? 0) > 0)
  }

  @Test func absurdDeclaredSizesAreRefusedBeforeAllocating() throws {
    let model = try Onnx_ModelProto(serializedBytes: Self.original)
    for dims: [Int64] in [[1 << 40], [-3, 4], [1 << 20, 1 << 20, 1 << 20], [Int64.max, 2]] {
      var m = model
      m.graph.initializer[0].dims = dims
      let data: Data = try m.serializedBytes()
      #expect(throws: LowbitError.self) { try ONNXReader.decode(data) }
    }
    var m = model
    m.graph.input[0].type.tensorType.shape.dim[2].dimValue = -5
    #expect(throws: LowbitError.self) { try ONNXReader.decode(try m.serializedBytes()) }
    m = model
    m.opsetImport[0].version = 99
    #expect(throws: LowbitError.self) { try ONNXReader.decode(try m.serializedBytes()) }
    m = model
    m.graph.node[3].opType = "NoSuchOp"
    let graph = try ONNXReader.decode(try m.serializedBytes())
    let error = #expect(throws: LowbitError.self) { try Interpreter(graph) }
    #expect(error?.description.contains("NoSuchOp") == true)
    #expect(error?.node == m.graph.node[3].name)
  }

  @Test func garbageAndEmptyFilesAreRefused() {
    #expect(throws: LowbitError.self) { try ONNXReader.decode(Data()) }
    #expect(throws: LowbitError.self) { try ONNXReader.decode(Data("this is not a model\n".utf8)) }
    #expect(throws: LowbitError.self) { try ONNXReader.load(contentsOf: "/nonexistent/model.onnx") }
  }
}
