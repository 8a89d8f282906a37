import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// The logits method (cross-entropy, white paper sec. 3.1) applies to classifier logits only:
/// `[N, C]` rows that are not normalized. Any other graph output (a language model's `[N, T, V]`,
/// a segmentation map, a regression) has no class axis the search could trust and takes the
/// activation method, and the pipeline says so.
@Suite struct LogitsRangeTests {
  /// `x -> MatMul(w) -> y` with `x` of `shape` (last axis 6) and logits of 5 "classes" scaled by 8.
  func graph(_ shape: [Dim]) -> Graph {
    Graph(
      nodes: [Node(name: "head", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: shape)],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: ["w": randomTensor([6, 5], seed: 3, in: -8...8)])
  }

  func outputRange(_ g: Graph, _ batches: [[String: Tensor]], notes: inout [String]) throws -> QuantParams {
    let sites = QuantizerPlacement.sites(in: g, config: QuantConfig())
    var heard: [String] = []
    let q = try Calibration.activationQuantizers(g, sites: sites, config: QuantConfig(), batches: batches, note: { heard.append($0) })
    notes = heard
    return try #require(q["y"]).params[0]
  }

  /// The output's values over `batches`, run through the float graph.
  func outputs(_ g: Graph, _ batches: [[String: Tensor]]) throws -> [Tensor] {
    let interpreter = try Interpreter(g)
    return try batches.map { try interpreter.run($0)["y"]! }
  }

  @Test func classifierLogitsTakeTheCrossEntropyRange() throws {
    let g = graph([.symbol("N"), .fixed(6)])
    let batches = (0..<2).map { ["x": randomTensor([16, 6], seed: 50 + UInt64($0))] }
    var notes: [String] = []
    let p = try outputRange(g, batches, notes: &notes)
    let logits = try outputs(g, batches)
    let config = QuantConfig()
    let ce = RangeSearch.crossEntropyRange(logits: logits.flatMap(\.floats), classes: 5, grid: config.activationGrid, symmetric: false)
    let expected = UniformQuantizer.params(lower: ce.lowerBound, upper: ce.upperBound, grid: config.activationGrid, symmetric: false)
    #expect(p == expected)
    #expect(notes.isEmpty)
  }

  @Test func aSequenceOfLogitsTakesTheActivationMethod() throws {
    let g = graph([.symbol("N"), .fixed(4), .fixed(6)])
    let batches = (0..<2).map { ["x": randomTensor([4, 4, 6], seed: 60 + UInt64($0))] }
    var notes: [String] = []
    let p = try outputRange(g, batches, notes: &notes)
    var observer = RangeObserver(name: "y")
    for t in try outputs(g, batches) { observer.observe(t.floats) }
    let config = QuantConfig()
    let mse = try observer.range(method: .mse, grid: config.activationGrid, symmetric: false, percentile: config.percentile)
    #expect(p == UniformQuantizer.params(lower: mse.lowerBound, upper: mse.upperBound, grid: config.activationGrid, symmetric: false))
    #expect(notes.count == 1 && notes[0].contains("'y' [4, 4, 5] is not [N, C] classifier logits: mse range"), "\(notes)")
  }
}
