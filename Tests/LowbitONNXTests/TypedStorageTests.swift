import Foundation
@testable import LowbitCore
import LowbitTestSupport
import Testing

@testable import LowbitONNX

/// Tensors held at their own width from file to file, and weights written as external data.
@Suite struct TypedStorageTests {
  /// A folder removed when the test ends.
  final class Folder {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-typed-\(getpid())-\(UUID().uuidString)")
    init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
  }

  @Test func narrowTypesAreHeldAtTheirWidthAndDecodeToTheSameValues() throws {
    let cases: [(DType, Int)] = [(.int8, 1), (.uint8, 1), (.int16, 2), (.uint16, 2), (.int32, 4), (.float16, 2), (.bfloat16, 2), (.float64, 8)]
    for (dtype, width) in cases {
      let t: Tensor
      if dtype.isFloatingPoint {
        t = Tensor(dtype: dtype, shape: [2, 3], storage: .float([1, -2, 0.5, 0.25, -0.125, 4]))
      } else {
        let r = dtype.integerRange!
        t = Tensor(dtype: dtype, shape: [2, 3], storage: .int([r.lowerBound, -1 & r.upperBound, 0, 1, 2, r.upperBound]))
      }
      let packed = t.packed()
      #expect(packed.isPacked && packed.heldBytes == 6 * width, "\(dtype)")
      #expect(packed == t && packed.storage == t.storage && packed.unpacked().heldBytes == t.heldBytes, "\(dtype)")
      #expect(packed.reshaped([3, 2]).isPacked)
    }
    // int4: two values per byte, element 0 in the low nibble.
    let nibbles = Tensor(dtype: .int4, shape: [3], storage: .int([-8, 7, -1])).packed()
    #expect(nibbles.rawBytes == [0x78, 0x0F] && nibbles.heldBytes == 2 && nibbles.ints == [-8, 7, -1])
    // float32, int64 and bool are already at their width.
    #expect(!Tensor(shape: [2], floats: [1, 2]).packed().isPacked)
  }

  @Test func bfloat16RoundsToNearestEven() throws {
    // bfloat16 keeps 8 significand bits: around 1 its step is 2^-7.
    let step: Float = 1.0 / 128
    let x = Tensor(shape: [5], floats: [1 + step / 2, 1 + 3 * step / 2, 1 + step / 2 + step / 64, 3.4e38, .infinity])
    let cast = Ops.cast(x, to: .bfloat16)
    #expect(cast.floats == [1, 1 + 2 * step, 1 + step, .infinity, .infinity])
    #expect(cast.packed().floats == cast.floats)
    #expect(Tensor(dtype: .bfloat16, shape: [1], storage: .float([.nan])).packed().floats[0].isNaN)
  }

  @Test func float64AndUInt64PassFromFileToFileBitForBit() throws {
    var graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    let doubles: [Double] = [0.1, 1e-300, -2.5e300, .pi]
    let bytes = doubles.map { $0.bitPattern.littleEndian }.withUnsafeBytes { Array($0) }
    graph.initializers["extra_float64"] = Tensor(dtype: .float64, shape: [4], rawBytes: bytes)!
    let big: [UInt64] = [UInt64.max, 1 << 63, 5]
    graph.initializers["extra_uint64"] = Tensor(dtype: .uint64, shape: [3], rawBytes: big.map(\.littleEndian).withUnsafeBytes { Array($0) })!
    let back = try ONNXReader.decode(try ONNXWriter.encode(graph))
    #expect(back.initializers["extra_float64"]!.rawBytes == bytes)
    #expect(back.initializers["extra_uint64"]!.rawBytes == big.map(\.littleEndian).withUnsafeBytes { Array($0) })
    // Computation reads float64 as Float.
    #expect(back.initializers["extra_float64"]!.floats[0] == Float(0.1))
  }

  @Test func typedFieldsAreReadIntoThePackedForm() throws {
    var p = Onnx_TensorProto()
    p.name = "d"
    p.dims = [2]
    p.dataType = Int32(DType.float64.rawValue)
    p.doubleData = [0.1, -3]
    let t = try Tensor(proto: p, baseDirectory: nil)
    #expect(t.isPacked && t.rawBytes == [0.1, -3].map { $0.bitPattern.littleEndian }.withUnsafeBytes { Array($0) })
    p.dataType = Int32(DType.bfloat16.rawValue)
    p.doubleData = []
    p.int32Data = [0x3F80, 0xC040]  // 1.0 and -3.0
    #expect(try Tensor(proto: p, baseDirectory: nil).floats == [1, -3])
  }

  @Test func externalDataRoundTripsAndRunsTheSame() throws {
    let folder = try Folder()
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_mobilenetv2"))
    let path = folder.path("model.onnx")
    try ONNXWriter.write(graph, to: path, externalData: .always)
    let files = try FileManager.default.contentsOfDirectory(atPath: folder.url.path).sorted()
    #expect(files == ["model.onnx", "model.onnx.data"])  // no temporary left behind
    let back = try ONNXReader.load(contentsOf: path)
    #expect(back.initializers == graph.initializers)
    // The model file holds the graph and the small tensors only; offsets are page-aligned.
    let proto = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: URL(fileURLWithPath: path)))
    var external = 0
    for t in proto.graph.initializer {
      let size = t.dataLocation == .external ? Int(t.externalData.first { $0.key == "length" }!.value)! : t.rawData.count
      #expect((t.dataLocation == .external) == (size >= externalDataThreshold), "\(t.name)")
      if t.dataLocation == .external {
        external += 1
        #expect(Int(t.externalData.first { $0.key == "offset" }!.value)! % externalDataAlignment == 0)
        #expect(t.externalData.first { $0.key == "location" }!.value == "model.onnx.data")
      }
    }
    #expect(external > 0)
    let input = Tensor(shape: [2, 1, 28, 28], floats: (0..<1568).map { Float($0 % 255) / 255 })
    let a = try Interpreter(graph).run(["input": input]), b = try Interpreter(back).run(["input": input])
    #expect(a == b)
  }

  @Test func automaticExternalDataStaysInOneFileForSmallModels() throws {
    let folder = try Folder()
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    try ONNXWriter.write(graph, to: folder.path("m.onnx"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.url.path) == ["m.onnx"])
  }
}
