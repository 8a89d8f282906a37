import LowbitCore
import LowbitData
@testable import LowbitQuant
import LowbitTestSupport
import Testing

/// Per-channel activation grids (`--per-channel-activations`): only values that no Conv, Gemm or
/// MatMul reads, and whose channel count a constant fixes, get one grid per channel; the QDQ
/// graph carries them as a per-axis Q/DQ pair's arithmetic (Div, Round, Max, Min, Mul against
/// `[C]` constants, broadcast along the last axis), and runs at any length.
@Suite struct PerChannelActivationTests {
  static let width = 8

  /// A post-LN transformer block without attention: `a = LN(x)`, `d = a W1 + b1`, `r = d + a`,
  /// `n = LN(r)`, `y = n W2`; and attention-like scores `s = a a^T + m` into a Softmax. Channel 5
  /// of `W1` is 50 times the others, so `d` and `r` carry one huge channel (as BERT's residual
  /// stream does).
  static func block() -> Graph {
    let c = width
    var w1 = randomTensor([c, c], seed: 61).floats
    for i in 0..<c { w1[i * c + 5] *= 50 }
    let ones = Tensor(shape: [c], floats: [Float](repeating: 1, count: c))
    let zeros = Tensor(shape: [c], floats: [Float](repeating: 0, count: c))
    return Graph(
      nodes: [
        Node(name: "ln1", opType: "LayerNormalization", inputs: ["x", "g1", "z1"], outputs: ["a"], attributes: ["axis": .int(-1)]),
        Node(name: "fc1", opType: "MatMul", inputs: ["a", "w1"], outputs: ["p"]),
        Node(name: "fc1_bias", opType: "Add", inputs: ["p", "b1"], outputs: ["d"]),
        Node(name: "residual", opType: "Add", inputs: ["d", "a"], outputs: ["r"]),
        Node(name: "ln2", opType: "LayerNormalization", inputs: ["r", "g2", "z2"], outputs: ["n"], attributes: ["axis": .int(-1)]),
        Node(name: "fc2", opType: "MatMul", inputs: ["n", "w2"], outputs: ["y"]),
        Node(name: "at", opType: "Transpose", inputs: ["a"], outputs: ["aT"], attributes: ["perm": .ints([0, 2, 1])]),
        Node(name: "scores", opType: "MatMul", inputs: ["a", "aT"], outputs: ["s"]),
        Node(name: "mask", opType: "Mul", inputs: ["s", "half"], outputs: ["sm"]),
        Node(name: "softmax", opType: "Softmax", inputs: ["sm"], outputs: ["attention"], attributes: ["axis": .int(-1)]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .symbol("L"), .fixed(c)])],
      outputs: [ValueInfo(name: "y", dtype: .float32), ValueInfo(name: "attention", dtype: .float32)],
      initializers: [
        "g1": ones, "z1": zeros, "g2": ones, "z2": zeros, "half": Tensor(scalar: 0.5),
        "w1": Tensor(shape: [c, c], floats: w1), "b1": randomTensor([c], seed: 62, in: -0.1...0.1),
        "w2": randomTensor([c, 4], seed: 63),
      ])
  }

  static func batches(length: Int) -> [[String: Tensor]] {
    (0..<4).map { ["x": randomTensor([8, length, width], seed: 70 + UInt64($0))] }
  }

  static func config(activationBits: Int = 8) -> QuantConfig {
    var c = QuantConfig()
    c.adaRound = false
    c.biasCorrection = .none
    c.quantizeWeights = false
    c.activationBits = activationBits
    c.activationPerChannel = true
    return c
  }

  /// Mean square of `y` between a quantized graph and the float one.
  static func outputError(_ graph: Graph, length: Int) throws -> Double {
    try outputMeanSquare(graph, block(), batches: batches(length: length))
  }

  @Test func onlyValuesThatNoLayerReadsAndWhoseChannelsAreFixedGetTheAxis() {
    let sites = QuantizerPlacement.sites(in: Self.block(), config: Self.config())
    let axes = Dictionary(uniqueKeysWithValues: sites.filter { $0.kind == .activation }.map { ($0.name, $0.channelAxis) })
    // d and r are read by Add and LayerNorm, and their channels come from W1: per channel.
    #expect(axes["d"] == .some(-1) && axes["r"] == .some(-1), "\(axes)")
    // a and n are read by MatMuls; the scores' last axis is the sequence (no constant fixes it);
    // the graph input and outputs keep one grid.
    for name in ["a", "n", "s", "x", "y"] { #expect(axes[name] == .some(nil), "\(name): \(axes)") }
    var perTensor = Self.config()
    perTensor.activationPerChannel = false
    #expect(QuantizerPlacement.sites(in: Self.block(), config: perTensor).allSatisfy { $0.channelAxis == nil || $0.kind == .weight })
  }

  @Test func theHugeChannelGetsItsOwnGridAndTheFileRunsAtAnotherLength() throws {
    let graph = Self.block()
    let perChannel = try PostTrainingQuantization.quantize(graph, config: Self.config(), batches: Self.batches(length: 3))
    var c = Self.config()
    c.activationPerChannel = false
    let perTensor = try PostTrainingQuantization.quantize(graph, config: c, batches: Self.batches(length: 3))

    let r = try #require(perChannel.quantizers["r"])
    #expect(r.granularity == .perChannel(axis: -1) && r.params.count == Self.width)
    let scales = r.params.map(\.scale)
    #expect(scales[5] > 10 * scales.enumerated().filter { $0.offset != 5 }.map(\.element).max()!, "\(scales)")
    // The file: r divided by [C] scales (broadcast along -1), rounded, clamped, scaled back.
    let div = try #require(perChannel.graph.nodes.first { $0.opType == "Div" && $0.inputs[0] == "r" })
    #expect(perChannel.graph.initializers[div.inputs[1]]?.shape == [Self.width])
    #expect(!perChannel.graph.nodes.contains { $0.opType == "QuantizeLinear" && $0.inputs[0] == "r" })

    // Calibrated on length 3, run at length 5: the scales depend on the channels only.
    for length in [3, 5] {
      let a = try Self.outputError(perChannel.graph, length: length), b = try Self.outputError(perTensor.graph, length: length)
      print("per-channel activations, length \(length): output mean square \(b) per tensor -> \(a) per channel")
      #expect(a < 0.7 * b)
    }
  }

  /// 4-bit activations at opset 13: the per-channel grid's integer bounds are the Max/Min
  /// against [C] constants; the graph equals per-channel fake quantization.
  /// Quantizer tuning (on by default below 8 bits) trains the per-channel scales too.
  @Test func narrowGridsAreClippedPerChannelAndTuned() throws {
    var config = Self.config(activationBits: 4)
    config.quantizerTuningOptions.iterations = 20
    config.quantizerTuningOptions.batchSize = 8
    let result = try PostTrainingQuantization.quantize(Self.block(), config: config, batches: Self.batches(length: 3))
    let r = try #require(result.quantizers["r"])
    #expect(r.granularity == .perChannel(axis: -1) && r.grid.bits == 4)
    let clip = result.graph.nodes.filter { ["Min", "Max"].contains($0.opType) && $0.name.contains("r_") }
    #expect(clip.count == 2)
    #expect(clip.allSatisfy { result.graph.initializers[$0.inputs[1]]?.shape == [Self.width] })
    let tuning = try #require(result.tuning)
    #expect(tuning.scales > 0 && tuning.after <= tuning.before, "\(tuning)")

    // The value after the Q/DQ pair equals the per-channel fake-quantized value.
    let feeds = Self.batches(length: 3)[0]
    var seen: [String: Tensor] = [:]
    _ = try Interpreter(result.graph).run(feeds, observe: { node, out in
      for (name, t) in zip(node.outputs, out) { seen[name] = t }
    })
    let minNode = try #require(clip.first { $0.opType == "Min" })
    let mul = try #require(result.graph.nodes.first { $0.opType == "Mul" && $0.inputs[0] == minNode.outputs[0] })
    let float = try #require(seen["r"]), quantized = try #require(seen[mul.outputs[0]])
    #expect(quantized.floats == r.fakeQuantize(float.floats, shape: float.shape))
  }
}

/// The written arithmetic of a last-axis per-channel activation quantizer against ONNX's per-axis
/// QuantizeLinear -> DequantizeLinear pair, run by the interpreter on the same values: equal
/// bit for bit, at rounding ties (`x = (k + 1/2) s`), beyond both ends of the grid and inside.
@Suite struct PerChannelArithmeticTests {
  @Test func equalsThePerAxisPairAtTiesAndSaturation() throws {
    let grid = IntegerGrid(bits: 8, signed: false)
    let params = [QuantParams(scale: 0.05, zeroPoint: 17), QuantParams(scale: 0.5, zeroPoint: 128), QuantParams(scale: 3e-3, zeroPoint: 250)]
    let q = TensorQuantizer(grid: grid, symmetric: false, granularity: .perChannel(axis: -1), params: params)
    let rows = 64
    var x: [Float] = []
    for i in 0..<rows {
      for p in params {
        let k = Float(i - 32) * 10  // steps from -320 to 310 from the zero point: past both ends
        x.append(i % 2 == 0 ? (k + 0.5) * p.scale : (k + Float(i % 7) / 7) * p.scale)
      }
    }
    let input = Tensor(shape: [2, rows / 2, params.count], floats: x)
    var g = Graph(nodes: [], inputs: [ValueInfo(name: "x", dtype: .float32)], outputs: [ValueInfo(name: "y", dtype: .float32)])
    g.nodes = QDQBuilder.lastAxisFakeQuantization(q, site: "x", source: "x", target: "y", &g)
    g.initializers["s"] = Tensor(shape: [3], floats: params.map(\.scale))
    g.initializers["z"] = Tensor(dtype: .uint8, shape: [3], storage: .int(params.map { Int64($0.zeroPoint) }))
    g.nodes += [
      Node(name: "q", opType: "QuantizeLinear", inputs: ["x", "s", "z"], outputs: ["xq"], attributes: ["axis": .int(-1)]),
      Node(name: "dq", opType: "DequantizeLinear", inputs: ["xq", "s", "z"], outputs: ["pair"], attributes: ["axis": .int(-1)]),
    ]
    g.outputs.append(ValueInfo(name: "pair", dtype: .float32))
    let out = try Interpreter(try g.validated()).run(["x": input])
    let arithmetic = try #require(out["y"]).floats, pair = try #require(out["pair"]).floats
    #expect(arithmetic == pair)
    #expect(arithmetic == q.fakeQuantize(x, shape: input.shape))
    #expect(Set(g.nodes.prefix(5).map(\.opType)) == ["Div", "Round", "Max", "Min", "Mul"])
    // Both ends of every channel's grid are reached, and ties occur.
    for (c, p) in params.enumerated() {
      let column = stride(from: c, to: x.count, by: params.count).map { arithmetic[$0] }
      #expect(column.min() == p.scale * Float(grid.qmin - p.zeroPoint) && column.max() == p.scale * Float(grid.qmax - p.zeroPoint))
    }
  }
}

/// A per-channel site whose channel axis turns out to hold one channel is one grid, fitted as a
/// per-tensor activation is (same histogram resolution, same range).
@Suite struct OneChannelFallbackTests {
  @Test func oneChannelIsFittedLikeATensor() throws {
    let g = Graph(
      nodes: [
        Node(name: "fc", opType: "MatMul", inputs: ["x", "w"], outputs: ["d"]),
        Node(name: "res", opType: "Add", inputs: ["d", "x"], outputs: ["r"]),
        Node(name: "out", opType: "MatMul", inputs: ["r", "w"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: ["w": Tensor(shape: [1, 1], floats: [0.7])])
    var config = QuantConfig()
    config.activationPerChannel = true
    let sites = QuantizerPlacement.sites(in: g, config: config)
    let residual = try #require(sites.first { $0.name == "d" })
    #expect(residual.channelAxis == -1)
    // A long-tailed input: the MSE range depends on the histogram's resolution.
    let batches = (0..<2).map { b in
      ["x": Tensor(shape: [256, 1], floats: randomTensor([256, 1], seed: 70 + UInt64(b)).floats.map { $0 * $0 * $0 * 4 })]
    }
    let perChannel = try Calibration.activationQuantizers(g, sites: sites, config: config, batches: FeedBatches(batches))
    config.activationPerChannel = false
    let perTensor = try Calibration.activationQuantizers(
      g, sites: QuantizerPlacement.sites(in: g, config: config), config: config, batches: FeedBatches(batches))
    #expect(perChannel["d"]?.granularity == .perTensor)
    #expect(perChannel["d"]?.params == perTensor["d"]?.params, "\(String(describing: perChannel["d"])) vs \(String(describing: perTensor["d"]))")
  }
}
