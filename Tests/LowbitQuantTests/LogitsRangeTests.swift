import LowbitCore
import LowbitData
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
    let q = try Calibration.activationQuantizers(g, sites: sites, config: QuantConfig(), batches: FeedBatches(batches), note: { heard.append($0) })
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

  /// `x -> MatMul(w) -> z -> head -> y`: a model that ends in probabilities.
  func probabilityGraph(_ head: String) -> Graph {
    Graph(
      nodes: [Node(name: "fc", opType: "MatMul", inputs: ["x", "w"], outputs: ["z"]),
              Node(name: "head", opType: head, inputs: ["z"], outputs: ["y"])],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(6)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: ["w": randomTensor([6, 5], seed: 3, in: -8...8)])
  }

  /// A Softmax or Sigmoid output stays float; the logits before it are quantized, at the
  /// cross-entropy range behind a Softmax, at the activation method behind a Sigmoid.
  @Test(arguments: ["Softmax", "LogSoftmax", "Sigmoid"])
  func probabilityOutputsStayFloatAndTheirLogitsAreQuantized(_ head: String) throws {
    let g = probabilityGraph(head)
    let sites = QuantizerPlacement.sites(in: g, config: QuantConfig())
    #expect(!sites.contains { $0.name == "y" })
    let z = try #require(sites.first { $0.name == "z" })
    #expect(z.isOutput == (head != "Sigmoid"))
    let batches = (0..<2).map { ["x": randomTensor([16, 6], seed: 70 + UInt64($0))] }
    let q = try Calibration.activationQuantizers(g, sites: sites, config: QuantConfig(), batches: FeedBatches(batches))
    var observer = RangeObserver(name: "z")
    let values = try batches.map { b -> Tensor in
      var seen: Tensor?
      _ = try Interpreter(g).run(b, observe: { node, outs in if node.name == "fc" { seen = outs[0] } })
      return seen!
    }
    for t in values { observer.observe(t.floats) }
    let config = QuantConfig()
    let expected: ClosedRange<Float>
    if head == "Sigmoid" {
      expected = try observer.range(method: .mse, grid: config.activationGrid, symmetric: false, percentile: config.percentile)
    } else {
      expected = RangeSearch.crossEntropyRange(logits: values.flatMap(\.floats), classes: 5, grid: config.activationGrid, symmetric: false)
    }
    let p = try #require(q["z"]).params[0]
    #expect(p == UniformQuantizer.params(lower: expected.lowerBound, upper: expected.upperBound, grid: config.activationGrid, symmetric: false))
    let result = try PostTrainingQuantization.quantize(g, config: QuantConfig(), batches: FeedBatches(batches))
    let step = try #require(result.steps.first { $0.step == "place quantizers" })
    #expect(step.detail == "output 'y' (\(head)) stays float, its input is quantized", "\(step.detail ?? "")")
  }
}
