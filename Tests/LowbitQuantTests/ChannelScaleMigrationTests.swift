import LowbitCore
import LowbitData
import LowbitTestSupport
import Testing

@testable import LowbitQuant

/// SmoothQuant and AWQ (`ChannelScaleMigration`) on `h = LN(x)` read by two MatMuls (and, with
/// `residual`, by an Add as in a post-LN transformer): channel 3 of the LayerNorm's gamma is 30,
/// so `h` carries one outlier channel into the MatMuls, as BERT's LayerNorm outputs do. Without
/// `normalized`, `h = x gamma` (a Mul by the same constant) instead.
@Suite struct ChannelScaleMigrationTests {
  static let width = 16

  static func graph(residual: Bool, normalized: Bool = true) -> Graph {
    let c = width
    var gamma = [Float](repeating: 1, count: c)
    gamma[3] = 30
    var nodes = [
      normalized
        ? Node(name: "ln", opType: "LayerNormalization", inputs: ["x", "gamma", "beta"], outputs: ["h"], attributes: ["axis": .int(-1)])
        : Node(name: "scale", opType: "Mul", inputs: ["x", "gamma"], outputs: ["h"]),
      Node(name: "fc1", opType: "MatMul", inputs: ["h", "w1"], outputs: ["y1"]),
      Node(name: "fc2", opType: "MatMul", inputs: ["h", "w2"], outputs: ["y2"]),
    ]
    var outputs = [ValueInfo(name: "y1", dtype: .float32), ValueInfo(name: "y2", dtype: .float32)]
    if residual {
      nodes.append(Node(name: "residual", opType: "Add", inputs: ["h", "x"], outputs: ["r"]))
      outputs.append(ValueInfo(name: "r", dtype: .float32))
    }
    return Graph(
      nodes: nodes, inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(c)])], outputs: outputs,
      initializers: [
        "gamma": Tensor(shape: [c], floats: gamma), "beta": randomTensor([c], seed: 5, in: -0.2...0.2),
        "w1": randomTensor([c, 8], seed: 6, in: -0.5...0.5), "w2": randomTensor([c, 12], seed: 7, in: -0.5...0.5),
      ])
  }

  static func batches(_ count: Int = 6) -> [[String: Tensor]] {
    (0..<count).map { ["x": randomTensor([32, width], seed: 40 + UInt64($0), in: -2...2)] }
  }

  static func w8a8() -> QuantConfig {
    var c = QuantConfig()
    c.adaRound = false
    c.biasCorrection = .none
    c.logitsRange = .mse  // the outputs are not logits
    c.rotation = false  // SmoothQuant alone (HadamardRotationTests has the rotation)
    return c
  }

  /// Largest `|a - b| / (|b| + 1)` over the outputs `names` (every output when nil) of both
  /// graphs on `batches`.
  static func difference(_ a: Graph, _ b: Graph, outputs names: Set<String>? = nil) throws -> Float {
    let p = try Interpreter(a), q = try Interpreter(b)
    var worst: Float = 0
    for feeds in batches() {
      let u = try p.run(feeds), v = try q.run(feeds)
      for (name, t) in v where names?.contains(name) ?? true {
        for (x, y) in zip(u[name]!.floats, t.floats) { worst = max(worst, abs(x - y) / (abs(y) + 1)) }
      }
    }
    return worst
  }

  /// With the residual Add also reading `h`, the group reads a copy of the LayerNorm with
  /// `gamma / s` and `beta / s`, and the Add the original; the float function is kept, the
  /// outlier channel's scale is the largest, and the chosen α lowers the layers' output error
  /// against `s = 1`. Both LayerNorm outputs are quantized, each once.
  @Test func smoothQuantCopiesTheLayerNormForTheGroup() throws {
    let g = Self.graph(residual: true)
    let (migrated, records) = try ChannelScaleMigration.run(g, method: .smoothQuant, config: Self.w8a8(), batches: FeedBatches(Self.batches()))
    let r = try #require(records.first)
    #expect(records.count == 1 && r.layers == ["fc1", "fc2"] && r.input == "h")
    #expect(r.alpha != nil && r.error < 0.8 * r.unscaledError, "\(r)")
    #expect(r.foldedInto.contains("a copy of 'ln'"), "\(r.foldedInto)")
    #expect(try Self.difference(migrated, g) < 1e-5)
    let copy = try #require(migrated.nodes.first { $0.opType == "LayerNormalization" && $0.name != "ln" })
    let gamma = try #require(migrated.initializers[copy.inputs[1]]).floats, original = g.initializers["gamma"]!.floats
    let s = zip(original, gamma).map { $0 / $1 }
    #expect(s.indices.max { s[$0] < s[$1] } == 3, "\(s)")
    #expect(migrated.nodes.first { $0.name == "residual" }?.inputs[0] == "h")
    #expect(migrated.nodes.filter { $0.opType.hasPrefix("MatMul") }.allSatisfy { $0.inputs[0] == copy.outputs[0] })
    let sites = QuantizerPlacement.sites(in: migrated, config: Self.w8a8()).filter { $0.kind == .activation }.map(\.name)
    #expect(sites.contains("h") && sites.contains(copy.outputs[0]), "\(sites)")
  }

  /// Where no LayerNorm produces the input, a Mul by `1/s` goes before the layers and ends the
  /// producing unit: its output is quantized, its input is not.
  @Test func elsewhereAMulGoesBeforeTheLayers() throws {
    let g = Self.graph(residual: false, normalized: false)
    let (migrated, records) = try ChannelScaleMigration.run(g, method: .smoothQuant, config: Self.w8a8(), batches: FeedBatches(Self.batches()))
    let r = try #require(records.first)
    #expect(r.alpha != nil && r.foldedInto.hasPrefix("Mul"), "\(r)")
    #expect(try Self.difference(migrated, g) < 1e-5)
    let mul = try #require(migrated.nodes.first { $0.opType == "Mul" && $0.inputs[0] == "h" })
    let sites = QuantizerPlacement.sites(in: migrated, config: Self.w8a8()).filter { $0.kind == .activation }.map(\.name)
    #expect(sites.contains(mul.outputs[0]) && !sites.contains("h"), "\(sites)")
  }

  /// Without the residual, `1/s` folds into the LayerNorm's gamma and beta: no node is added.
  @Test func layerNormTakesTheInverseScale() throws {
    let g = Self.graph(residual: false)
    let (migrated, records) = try ChannelScaleMigration.run(g, method: .smoothQuant, config: Self.w8a8(), batches: FeedBatches(Self.batches()))
    #expect(records.first?.foldedInto == "LayerNormalization 'ln'")
    #expect(migrated.nodes.map(\.opType) == g.nodes.map(\.opType))
    #expect(try Self.difference(migrated, g) < 1e-5)
    // gamma_j / s_j times row j of W1 s_j: the product is unchanged.
    let s0 = g.initializers["gamma"]!.floats[3] / migrated.initializers["gamma"]!.floats[3]
    let w0 = g.initializers["w1"]!.floats[3 * 8], w1 = migrated.initializers["w1"]!.floats[3 * 8]
    #expect(abs(w1 - w0 * s0) <= 1e-5 * abs(w1))
  }

  /// The candidate scales follow the formulas: SmoothQuant `max|x_j|^α / max|W_j|^(1-α)`, AWQ
  /// `mean|x_j|^α / sqrt(max s min s)`.
  @Test func candidateScalesFollowTheFormulas() {
    var s = ChannelScaleMigration.InputStatistics(features: 2)
    s.lower = [-4, -1]
    s.upper = [2, 9]
    s.absoluteSum = [8, 2]
    s.rows = 4
    let layer = LinearLayer(node: Node(name: "m", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"]), weight: "w", input: "x",
                            transB: false, k: 2, n: 2)
    let w: [Float] = [0.5, -2, 0.25, 0.125]  // rows: max |W_0| = 2, max |W_1| = 0.25
    let smooth = ChannelScaleMigration.candidates([0.5], method: .smoothQuant, statistics: s, weights: [w], layers: [layer])[0]
    #expect(abs(smooth[0] - Float((4.0).squareRoot() / (2.0).squareRoot())) < 1e-6)
    #expect(abs(smooth[1] - Float((9.0).squareRoot() / (0.25).squareRoot())) < 1e-6)
    let awq = ChannelScaleMigration.candidates([1], method: .awq, statistics: s, weights: [w], layers: [layer])[0]
    // means 2 and 0.5: s = [2, 0.5] / sqrt(2 * 0.5)
    #expect(abs(awq[0] - 2) < 1e-6 && abs(awq[1] - 0.5) < 1e-6)
  }

  /// The W8A8 pipeline migrates by default on a graph with LayerNorm and MatMul, and the
  /// MatMuls' outputs follow the float model more closely than without migration.
  @Test func pipelineMigratesByDefaultAndGainsFidelity() throws {
    let g = Self.graph(residual: true)
    var on = Self.w8a8()
    on.disabled = ["x"]  // the input's own rounding, scaled 30-fold by gamma, would hide the rest
    #expect(on.migrationInUse(for: g) == .smoothQuant)
    var off = on
    off.migration = MigrationMethod.none
    let with = try PostTrainingQuantization.quantize(g, config: on, batches: Self.batches())
    let without = try PostTrainingQuantization.quantize(g, config: off, batches: Self.batches())
    #expect(with.steps.contains { $0.step == "channel-scale migration" } && with.migration.count == 1)
    #expect(!without.steps.contains { $0.step == "channel-scale migration" })
    let a = try Self.difference(with.graph, g, outputs: ["y1", "y2"]), b = try Self.difference(without.graph, g, outputs: ["y1", "y2"])
    print("migration: largest relative output error \(b) without -> \(a) with")
    #expect(a < 0.7 * b)
  }

  /// AWQ for 4-bit weights (activations float): the chosen scales lower the layers' output error
  /// and keep the float function; weight-only at 4 bits picks it by default.
  @Test func awqForFourBitWeights() throws {
    var c = QuantConfig()
    c.quantizeActivations = false
    c.weightBits = 4
    c.weightGroupSize = 8
    let g = Self.graph(residual: true)
    #expect(c.migrationInUse(for: g) == .awq)
    let (migrated, records) = try ChannelScaleMigration.run(g, method: .awq, config: c, batches: FeedBatches(Self.batches()))
    let r = try #require(records.first)
    #expect(r.error <= r.unscaledError)
    #expect(try Self.difference(migrated, g) < 1e-5)
  }
}
