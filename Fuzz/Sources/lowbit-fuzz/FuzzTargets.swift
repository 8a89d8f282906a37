import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitQuant
import LowbitTrain

/// One libFuzzer entry point serving every reader; `LOWBIT_FUZZ_TARGET` picks the reader. A
/// target may throw `LowbitError` (the file is refused); anything else (a trap, a sanitizer
/// report, a hang past libFuzzer's `-timeout`) is a finding.
enum FuzzTarget: String, CaseIterable {
  case onnx, ops, npy, npz, idx, image, tokenizer, text, config, checkpoint

  static let current: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["LOWBIT_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
      FileHandle.standardError.write(Data("set LOWBIT_FUZZ_TARGET to one of \(allCases.map(\.rawValue))\n".utf8))
      exit(2)
    }
    KernelThreads.set(1)
    return t
  }()

  /// The MiniLM tokenizer (`LOWBIT_FUZZ_TOKENIZER`), read once, for feeding fuzzed text
  /// through a real vocabulary.
  static let textTokenizer: Tokenizer? = ProcessInfo.processInfo.environment["LOWBIT_FUZZ_TOKENIZER"].flatMap {
    try? Tokenizer(contentsOf: $0)
  }

  func run(_ bytes: [UInt8]) throws {
    switch self {
    case .onnx:
      let graph = try ONNXReader.decode(Data(bytes)).validated().simplified(maxFoldedElements: 1 << 16)
      try Self.runSmall(graph)
    case .ops: try FuzzedGraph.run(bytes)
    case .npy: _ = try NPY.decode(bytes, name: "fuzz.npy")
    case .npz: _ = try NPZ.decode(bytes, name: "fuzz.npz")
    case .idx: _ = try IDX.decode(bytes, name: "fuzz.idx", limit: 64)
    case .image:
      let image = try ImageDecoding.decode(bytes, name: "fuzz.img")
      guard image.width * image.height <= 1 << 22 else { return }
      _ = ImagePreprocessing(resize: .shorterSide(37), crop: ImageSize(height: 32, width: 32)).row(image)
    case .tokenizer:
      // The first half of the input is the tokenizer file, the rest a text to encode with it.
      let cut = bytes.count / 2
      let t = try Tokenizer(json: Array(bytes[..<cut]), name: "fuzz.json")
      let text = String(decoding: bytes[cut...], as: UTF8.self)
      _ = t.encode(text)
      _ = t.encode(text, maxLength: 16)
    case .text:
      let path = NSTemporaryDirectory() + "lowbit-fuzz-\(getpid()).txt"
      try Data(bytes).write(to: URL(fileURLWithPath: path))
      defer { try? FileManager.default.removeItem(atPath: path) }
      let lines = try TextLines.index(path)
      let texts = try lines.texts(0..<lines.lines.count)
      if let t = Self.textTokenizer {
        for text in texts { _ = t.encode(text, maxLength: 64) }
      }
    case .config:
      let data = Data(bytes)
      if let c = try? JSONDecoder().decode(QuantConfig.self, from: data) { try c.validate() }
      struct File: Decodable { var data: DataOptions? }
      if let o = try? JSONDecoder().decode(File.self, from: data).data {
        _ = try o.imagePreprocessing(for: ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)]))
      }
    case .checkpoint: _ = try Checkpoint(decoding: bytes, source: "fuzz.ckpt")
    }
  }

  /// Runs `graph` on zeros when every input has a fixed shape of at most 4,096 elements.
  static func runSmall(_ graph: Graph) throws {
    var feeds: [String: Tensor] = [:]
    for input in graph.inputs {
      guard let dims = input.shape?.compactMap(\.value), dims.count == input.shape?.count,
        dims.reduce(1, { $0 * max($1, 0) }) <= 4096, let dtype = input.dtype
      else { return }
      let n = dims.reduce(1, *)
      switch dtype.storageClass {
      case .float: feeds[input.name] = Tensor(dtype: dtype, shape: dims, storage: .float(Array(repeating: 0, count: n)))
      case .int: feeds[input.name] = Tensor(dtype: dtype, shape: dims, storage: .int(Array(repeating: 0, count: n)))
      case .bool: feeds[input.name] = Tensor(dtype: dtype, shape: dims, storage: .bool(Array(repeating: false, count: n)))
      }
    }
    _ = try Interpreter(graph).run(feeds)
  }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func lowbitFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
  do {
    try FuzzTarget.current.run(bytes)
  } catch is LowbitError {
    // Refused with a message: what a bad file should get.
  } catch {
    // Foundation's own errors (writing the temporary text file) are not findings either.
  }
  return 0
}

/// libFuzzer's driver, given the entry point (the runtime's own `main` is not linked: SwiftPM
/// names an executable's entry `<module>_main`).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
  _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("lowbit_fuzz_main")
func lowbitFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments, lowbitFuzzOneInput)
}
