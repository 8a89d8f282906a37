import LowbitCore
import LowbitTestSupport
import Testing

/// `Graph.inferShapes()` on the shape arithmetic exporters emit around dynamic batches and
/// sequence lengths. Every inferred fixed dimension must equal the one the interpreter computes.
@Suite struct ShapeInferenceTests {
  static func ints(_ v: [Int64]) -> Tensor { Tensor(shape: [v.count], ints: v) }

  /// Checks every value the interpreter computes against its inferred fact: same rank, equal
  /// fixed dimensions, same type.
  static func checkAgainstInterpreter(_ g: Graph, _ feeds: [String: Tensor]) throws -> [String: ShapeFact] {
    let facts = g.inferShapes()
    _ = try Interpreter(g).run(feeds, observe: { node, results in
      for (name, t) in zip(node.outputs, results) {
        guard let fact = facts[name] else { Issue.record("\(node.opType) '\(name)': no fact"); continue }
        if let d = fact.dtype { #expect(d == t.dtype, "\(name)") }
        guard let shape = fact.shape else { Issue.record("\(node.opType) '\(name)': no shape"); continue }
        #expect(shape.count == t.rank, "\(name): \(shape) vs \(t.shape)")
        for (d, n) in zip(shape, t.shape) { if let v = d.value { #expect(v == n, "\(name): \(shape) vs \(t.shape)") } }
      }
    })
    return facts
  }

  /// A GPT-style block's shape code: the batch read with Shape at run time, the heads split off
  /// by Reshape, q/k/v by Split with sizes as an input, and the positions sliced from a table with
  /// starts and ends computed from the input.
  @Test func dynamicBatchReshapeSplitAndSlice() throws {
    let g = Graph(
      nodes: [
        Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
        Node(name: "batch", opType: "Gather", inputs: ["s", "zero"], outputs: ["n"], attributes: ["axis": .int(0)]),
        Node(name: "length", opType: "Gather", inputs: ["s", "one"], outputs: ["l"], attributes: ["axis": .int(0)]),
        Node(name: "n1", opType: "Unsqueeze", inputs: ["n", "axes0"], outputs: ["n_1"]),
        Node(name: "l1", opType: "Unsqueeze", inputs: ["l", "axes0"], outputs: ["l_1"]),
        Node(name: "target", opType: "Concat", inputs: ["n_1", "l_1", "heads"], outputs: ["t"], attributes: ["axis": .int(0)]),
        Node(name: "qkv", opType: "MatMul", inputs: ["x", "w"], outputs: ["h"]),
        Node(name: "split", opType: "Split", inputs: ["h", "sizes"], outputs: ["q", "k", "v"], attributes: ["axis": .int(-1)]),
        Node(name: "reshape", opType: "Reshape", inputs: ["q", "t"], outputs: ["qh"]),
        Node(name: "positions", opType: "Slice", inputs: ["table", "zero1", "l_1", "zero1"], outputs: ["p"]),
        Node(name: "tail", opType: "Slice", inputs: ["s", "one1", "big"], outputs: ["st"]),
        Node(name: "steps", opType: "Range", inputs: ["zero_s", "l", "one_s"], outputs: ["r"]),
        Node(name: "expand", opType: "Expand", inputs: ["p", "ex"], outputs: ["pe"]),
        Node(name: "pick", opType: "GatherElements", inputs: ["h", "idx"], outputs: ["g"], attributes: ["axis": .int(2)]),
      ],
      inputs: [
        ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .symbol("L"), .fixed(8)]),
        ValueInfo(name: "ex", dtype: .int64, shape: [.fixed(3)]),
        ValueInfo(name: "idx", dtype: .int64, shape: [.symbol("N"), .symbol("L"), .fixed(2)]),
      ],
      outputs: [
        ValueInfo(name: "qh", dtype: .float32), ValueInfo(name: "k", dtype: .float32), ValueInfo(name: "v", dtype: .float32),
        ValueInfo(name: "pe", dtype: .float32), ValueInfo(name: "st", dtype: .int64), ValueInfo(name: "r", dtype: .int64),
        ValueInfo(name: "g", dtype: .float32),
      ],
      initializers: [
        "zero": Tensor(shape: [], ints: [0]), "one": Tensor(shape: [], ints: [1]), "axes0": Self.ints([0]), "heads": Self.ints([2, 2]),
        "w": randomTensor([8, 12], seed: 1), "sizes": Self.ints([4, 4, 4]), "table": randomTensor([16, 8], seed: 2),
        "zero1": Self.ints([0]), "one1": Self.ints([1]), "big": Self.ints([100]),
        "zero_s": Tensor(shape: [], ints: [0]), "one_s": Tensor(shape: [], ints: [1]),
      ])
    let feeds: [String: Tensor] = [
      "x": randomTensor([3, 5, 8], seed: 3), "ex": Self.ints([3, 5, 8]),
      "idx": Tensor(shape: [3, 5, 2], ints: (0..<30).map { Int64($0 % 12) }),
    ]
    let facts = try Self.checkAgainstInterpreter(g, feeds)
    #expect(facts["t"]?.dtype == .int64 && facts["t"]?.shape == [Dim.fixed(4)])
    #expect(facts["q"]?.shape == [Dim.symbol("N"), .symbol("L"), .fixed(4)])
    #expect(facts["qh"]?.shape?.count == 4 && facts["qh"]?.shape?.last == .fixed(2))
    #expect(facts["p"]?.shape?.last == .fixed(8) && facts["p"]?.shape?.first?.value == nil)
    #expect(facts["st"]?.value == [Dim.symbol("L"), .fixed(8)])
    #expect(facts["pe"]?.shape?.count == 3 && facts["pe"]?.shape?.last == .fixed(8))
    #expect(facts["g"]?.shape == [Dim.symbol("N"), .symbol("L"), .fixed(2)])
  }

  /// Split without sizes cuts equal parts; Slice with constant bounds gets fixed sizes, steps
  /// and negative indices included.
  @Test func equalSplitsAndConstantSlices() throws {
    let g = Graph(
      nodes: [
        Node(name: "split", opType: "Split", inputs: ["x"], outputs: ["a", "b"], attributes: ["axis": .int(1)]),
        Node(name: "slice", opType: "Slice", inputs: ["x", "starts", "ends", "axes", "steps"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(6), .fixed(10)])],
      outputs: [ValueInfo(name: "a", dtype: .float32), ValueInfo(name: "b", dtype: .float32), ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "starts": Self.ints([-1, 1]), "ends": Self.ints([-100, 9]), "axes": Self.ints([1, 2]), "steps": Self.ints([-2, 3]),
      ])
    let facts = try Self.checkAgainstInterpreter(g, ["x": randomTensor([2, 6, 10], seed: 4)])
    #expect(facts["a"]?.shape == [Dim.symbol("N"), .fixed(3), .fixed(10)])
    #expect(facts["y"]?.shape == [Dim.symbol("N"), .fixed(3), .fixed(3)])
  }

  /// EfficientNet's exported head: a padded stem (TensorFlow's "same" padding as a Pad node) and
  /// `x.view(x.size(0), -1)` on the pooled features, the batch read with Shape from the graph
  /// input. Pad keeps the batch symbol, so simplification gives the Reshape the constant target
  /// `[0, -1]` and drops the shape subgraph; the outputs are unchanged.
  @Test func paddedStemAndFlattenOfTheInputsBatch() throws {
    let g = Graph(
      nodes: [
        Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
        Node(name: "batch", opType: "Gather", inputs: ["s", "zero"], outputs: ["n"], attributes: ["axis": .int(0)]),
        Node(name: "pad", opType: "Pad", inputs: ["x", "pads"], outputs: ["p"]),
        Node(name: "stem", opType: "Conv", inputs: ["p", "w"], outputs: ["c"], attributes: ["strides": .ints([2, 2])]),
        Node(name: "pool", opType: "GlobalAveragePool", inputs: ["c"], outputs: ["g"]),
        Node(name: "n1", opType: "Unsqueeze", inputs: ["n", "axes0"], outputs: ["n_1"]),
        Node(name: "target", opType: "Concat", inputs: ["n_1", "minus1"], outputs: ["t"], attributes: ["axis": .int(0)]),
        Node(name: "flatten", opType: "Reshape", inputs: ["g", "t"], outputs: ["f"]),
        Node(name: "fc", opType: "Gemm", inputs: ["f", "fw"], outputs: ["y"], attributes: ["transB": .int(1)]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(9), .fixed(9)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "zero": Tensor(shape: [], ints: [0]), "axes0": Self.ints([0]), "minus1": Self.ints([-1]),
        "pads": Self.ints([0, 0, 0, 1, 0, 0, 0, 2]), "w": randomTensor([4, 3, 3, 3], seed: 5), "fw": randomTensor([5, 4], seed: 6),
      ])
    let feeds = ["x": randomTensor([2, 3, 9, 9], seed: 7)]
    let facts = try Self.checkAgainstInterpreter(g, feeds)
    #expect(facts["p"]?.shape == [Dim.symbol("N"), .fixed(3), .fixed(9), .fixed(12)])
    #expect(facts["t"]?.value == [Dim.symbol("N"), .fixed(-1)])
    let simple = try g.simplified()
    #expect(!simple.nodes.contains { ["Shape", "Gather", "Concat", "Unsqueeze"].contains($0.opType) }, "\(simple.nodes.map(\.opType))")
    let reshape = try #require(simple.nodes.first { $0.opType == "Reshape" })
    #expect(simple.initializers[reshape.inputs[1]]?.ints == [0, -1])
    #expect(try Interpreter(simple).run(feeds)["y"] == Interpreter(g).run(feeds)["y"])
  }
}
