import LowbitCore
import Testing

private typealias H = KernelHarness

/// The interpreter runs QuantizeLinear -> DequantizeLinear pairs as one vectorized
/// fake-quantization pass; it must give exactly what the two ONNX kernels give one after the
/// other: `(clamp(round_half_even(x / s) + z, lo, hi) - z) * s`.
@Suite("QuantizeLinear -> DequantizeLinear as one pass")
struct FakeQuantizeLinearTests {
  /// Q -> DQ through the interpreter (fused) and through the two kernels (unfused).
  private func both(_ x: Tensor, scale: Tensor, zero: Tensor, axis: Int? = nil) throws -> (fused: [Float], pair: [Float]) {
    let attributes: [String: Attribute] = axis.map { ["axis": .int($0)] } ?? [:]
    let graph = Graph(
      nodes: [
        Node(name: "q", opType: "QuantizeLinear", inputs: ["x", "s", "z"], outputs: ["q"], attributes: attributes),
        Node(name: "dq", opType: "DequantizeLinear", inputs: ["q", "s", "z"], outputs: ["y"], attributes: attributes),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32)], outputs: [ValueInfo(name: "y")],
      initializers: ["s": scale, "z": zero])
    let fused = try Interpreter(graph).run(["x": x])["y"]!.floats
    let q = try H.run1("QuantizeLinear", [x, scale, zero], attributes: attributes)
    let pair = try H.run1("DequantizeLinear", [q, scale, zero], attributes: attributes).floats
    return (fused, pair)
  }

  /// Ties, NaN, infinities, values far outside the grid, and a long random run.
  private func values(scale: Float, count: Int) -> [Float] {
    var v: [Float] = [0, -0.0, .nan, .infinity, -.infinity, 1e30, -1e30, Float.greatestFiniteMagnitude]
    for k in -300...300 { v.append((Float(k) + 0.5) * scale) }
    var state: UInt64 = 12345
    while v.count < count {
      state = state &* 6364136223846793005 &+ 1442695040888963407
      v.append((Float(state >> 40) / Float(1 << 24) - 0.5) * 600 * scale)
    }
    return Array(v.prefix(count))
  }

  @Test func perTensorUint8AndInt16MatchThePair() throws {
    let x = H.floats([1, 3, 50, 70], values(scale: 0.037, count: 10_500))
    let u8 = try both(x, scale: H.floats([], [0.037]), zero: H.typed(.uint8, [], [131]))
    #expect(u8.fused.elementsEqualBitwise(u8.pair))
    let i16 = try both(x, scale: H.floats([], [0.0007]), zero: H.typed(.int16, [], [-12]))
    #expect(i16.fused.elementsEqualBitwise(i16.pair))
  }

  @Test func perAxisInt8MatchesThePair() throws {
    let x = H.floats([3, 3, 7, 10], values(scale: 0.11, count: 630))
    let r = try both(x, scale: H.floats([3], [0.11, 0.5, 0.013]), zero: H.typed(.int8, [3], [0, -3, 7]), axis: 1)
    #expect(r.fused.elementsEqualBitwise(r.pair))
  }

  @Test func int32GridKeepsTheScalarPath() throws {
    let x = H.floats([4], [3e9, -3e9, 1e6 + 0.5, 12.5])
    let r = try both(x, scale: H.floats([], [1]), zero: H.typed(.int32, [], [5]))
    #expect(r.fused.elementsEqualBitwise(r.pair))
  }
}

extension [Float] {
  /// Equal bit patterns, element by element (so NaN equals NaN and 0 differs from -0).
  fileprivate func elementsEqualBitwise(_ other: [Float]) -> Bool {
    count == other.count && zip(self, other).allSatisfy { $0.bitPattern == $1.bitPattern }
  }
}

/// A QDQ Conv whose weight zero point or bias is of a type DequantizeLinear refuses is not an
/// integer layer: building the interpreter reads no value of the wrong type (it trapped once),
/// and running the graph ends in DequantizeLinear's error, which names the node.
@Suite struct IntegerLayerTypeTests {
  static func conv(weightZero: Tensor, bias: Tensor) -> Graph {
    Graph(
      nodes: [
        Node(name: "qx", opType: "QuantizeLinear", inputs: ["x", "sx", "zx"], outputs: ["xq"]),
        Node(name: "dqx", opType: "DequantizeLinear", inputs: ["xq", "sx", "zx"], outputs: ["xd"]),
        Node(name: "dqw", opType: "DequantizeLinear", inputs: ["wq", "sw", "zw"], outputs: ["wd"]),
        Node(name: "dqb", opType: "DequantizeLinear", inputs: ["bq", "sb"], outputs: ["bd"]),
        Node(name: "conv", opType: "Conv", inputs: ["xd", "wd", "bd"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(1), .fixed(2), .fixed(2)])],
      outputs: [ValueInfo(name: "y")],
      initializers: [
        "sx": Tensor(scalar: 0.1), "zx": Tensor(dtype: .uint8, shape: [], storage: .int([128])),
        "wq": Tensor(dtype: .int8, shape: [2, 1, 1, 1], storage: .int([3, -5])), "sw": Tensor(scalar: 0.02),
        "zw": weightZero, "bq": bias, "sb": Tensor(scalar: 0.002),
      ])
  }

  @Test func wrongTypesAreRefusedByDequantizeLinearNotTrapped() throws {
    let x = Tensor(shape: [1, 1, 2, 2], floats: [0.1, -0.2, 0.3, 0.4])
    let int8Zero = Tensor(dtype: .int8, shape: [], storage: .int([0]))
    let int32Bias = Tensor(dtype: .int32, shape: [2], storage: .int([10, -10]))
    // The well-typed graph runs (and is an integer layer).
    _ = try Interpreter(Self.conv(weightZero: int8Zero, bias: int32Bias)).run(["x": x])
    for graph in [Self.conv(weightZero: Tensor(scalar: 0), bias: int32Bias),
                  Self.conv(weightZero: int8Zero, bias: Tensor(shape: [2], floats: [1, -1]))] {
      let interpreter = try Interpreter(graph)
      #expect(throws: LowbitError.self) { try interpreter.run(["x": x]) }
    }
  }
}
