import Foundation
import LowbitCore
import LowbitTestSupport
import Testing

@testable import LowbitONNX

@Suite struct RoundTripTests {
  @Test func demoModelLoadsWithItsParameters() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    #expect(graph.opset == 17)
    #expect(graph.inputs.map(\.name) == ["input"])
    #expect(graph.inputs[0].shape == [.symbol("N"), .fixed(1), .fixed(28), .fixed(28)])
    #expect(graph.opHistogram["Conv"] == 21)
    // fm_models.json: 272186 parameters (BatchNorm statistics included as float initializers).
    #expect(graph.parameterCount >= 272_186)
  }

  @Test func writingAndReadingBackKeepsTheGraph() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_mobilenetv2"))
    let bytes = try ONNXWriter.encode(graph)
    var back = try ONNXReader.decode(bytes)
    back.metadata = graph.metadata
    #expect(back.nodes == graph.nodes)
    #expect(back.initializers == graph.initializers)
    #expect(back.inputs == graph.inputs)
    #expect(back.outputs == graph.outputs)
  }

  @Test func everyDTypeRoundTripsThroughTensorProto() throws {
    for dtype in DType.allCases {
      let tensor: Tensor
      switch dtype.storageClass {
      case .float: tensor = Tensor(dtype: dtype, shape: [3], storage: .float([1.5, -2, 0.25]))
      case .bool: tensor = Tensor(dtype: dtype, shape: [3], storage: .bool([true, false, true]))
      case .int:
        let r = dtype.integerRange!
        let values = [r.lowerBound, 0, r.upperBound].map { max($0, Int64.min / 2) }
        tensor = Tensor(dtype: dtype, shape: [3], storage: .int(values))
      }
      let back = try Tensor(proto: tensor.proto(name: "t"), baseDirectory: nil)
      #expect(back == tensor, "dtype \(dtype)")
    }
  }

  @Test func externalDataIsReadFromTheModelsFolder() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-ext-\(getpid())")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let values: [Float] = [1, 2, 3, 4, 5, 6]
    var blob = Data(repeating: 0, count: 16)  // data at offset 16
    values.map(\.bitPattern.littleEndian).withUnsafeBytes { blob.append(contentsOf: $0) }
    try blob.write(to: folder.appendingPathComponent("weights.bin"))
    var proto = Onnx_TensorProto()
    proto.name = "w"
    proto.dims = [2, 3]
    proto.dataType = 1
    proto.dataLocation = .external
    for (k, v) in [("location", "weights.bin"), ("offset", "16"), ("length", "24")] {
      var e = Onnx_StringStringEntryProto()
      e.key = k
      e.value = v
      proto.externalData.append(e)
    }
    let t = try Tensor(proto: proto, baseDirectory: folder.path)
    #expect(t.floats == values && t.shape == [2, 3])
    proto.externalData[2].value = "4000"
    #expect(throws: LowbitError.self) { try Tensor(proto: proto, baseDirectory: folder.path) }
    proto.externalData[0].value = "../etc/passwd"
    #expect(throws: LowbitError.self) { try Tensor(proto: proto, baseDirectory: folder.path) }
  }
}
