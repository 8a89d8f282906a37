import LowbitCore
import LowbitTestSupport
import Testing

/// x -> Conv -> BN -> Relu -> Identity -> Flatten -> y, with a constant Shape-free Reshape chain.
func smallConvGraph() -> Graph {
  var g = SeededGenerator(seed: 3)
  let w = Tensor(shape: [4, 2, 3, 3], floats: randomFloats(72, using: &g))
  let bn = (0..<4).map { _ in Tensor(shape: [4], floats: randomFloats(4, in: 0.5...1.5, using: &g)) }
  return Graph(
    nodes: [
      Node(name: "conv", opType: "Conv", inputs: ["x", "w"], outputs: ["c"], attributes: ["pads": .ints([1, 1, 1, 1])]),
      Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "g", "b", "m", "v"], outputs: ["n"]),
      Node(name: "relu", opType: "Relu", inputs: ["n"], outputs: ["r"]),
      Node(name: "id", opType: "Identity", inputs: ["r"], outputs: ["r2"]),
      Node(name: "flat", opType: "Flatten", inputs: ["r2"], outputs: ["y"]),
      Node(name: "dead", opType: "Relu", inputs: ["x"], outputs: ["unused"]),
    ],
    inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(2), .fixed(5), .fixed(5)])],
    outputs: [ValueInfo(name: "y", dtype: .float32)],
    initializers: ["w": w, "g": bn[0], "b": bn[1], "m": bn[2], "v": bn[3]])
}

@Suite struct GraphTests {
  let x = randomTensor([2, 2, 5, 5], seed: 9)

  @Test func simplifyingKeepsOutputsAndDropsIdentityAndDeadNodes() throws {
    let graph = smallConvGraph()
    let simple = try graph.simplified()
    #expect(!simple.nodes.contains { $0.opType == "Identity" || $0.name == "dead" })
    let a = try Interpreter(graph).run(["x": x])["y"]!
    let b = try Interpreter(simple).run(["x": x])["y"]!
    #expect(a == b)
    #expect(simple.valueInfo["y"]?.shape == [.symbol("N"), .fixed(100)])
  }

  @Test func foldingBatchNormKeepsOutputsAndStatistics() throws {
    let graph = smallConvGraph()
    let (folded, stats) = try graph.foldingBatchNorm()
    #expect(!folded.nodes.contains { $0.opType == "BatchNormalization" })
    #expect(stats["conv"]?.gamma == graph.initializers["g"]!.floats)
    let a = try Interpreter(graph).run(["x": x])["y"]!
    let b = try Interpreter(folded).run(["x": x])["y"]!
    #expect(maxRelativeError(b.floats, a.floats) < 1e-5)
  }

  @Test func fusedAndUnfusedExecutionAgreeExactly() throws {
    let graph = try smallConvGraph().foldingBatchNorm().graph
    var seen: [String] = []
    let fused = try Interpreter(graph).run(["x": x])["y"]!
    let plain = try Interpreter(graph, fuseActivations: false).run(["x": x], observe: { node, _ in seen.append(node.name) })["y"]!
    #expect(fused == plain)
    #expect(seen.contains("conv") && seen.contains("relu"))
  }

  @Test func danglingInputsCyclesAndUnknownOpsAreNamed() throws {
    var g = smallConvGraph()
    g.nodes[2].inputs = ["nowhere"]
    var error = #expect(throws: LowbitError.self) { try Interpreter(g) }
    #expect(error?.description == "[Relu 'relu'] input 'nowhere' is not defined by any node, input or initializer")
    g = smallConvGraph()
    g.nodes[0].inputs[0] = "y"
    error = #expect(throws: LowbitError.self) { try Interpreter(g) }
    #expect(error?.message.contains("cycle") == true)
    g = smallConvGraph()
    g.nodes[2].opType = "Frobnicate"
    error = #expect(throws: LowbitError.self) { try Interpreter(g) }
    #expect(error?.opType == "Frobnicate" && error?.node == "relu")
    #expect(error?.message.hasPrefix("operator Frobnicate is not supported (supported: ") == true, "\(error?.message ?? "")")
    // Every unsupported op is named in one error, located at the first.
    g.nodes[0].opType = "NonMaxSuppression"
    g.nodes[3].opType = "Frobnicate"
    error = #expect(throws: LowbitError.self) { try Interpreter(g) }
    #expect(error?.node == g.nodes[0].name)
    #expect(error?.message.hasPrefix("operator NonMaxSuppression is not supported; also unsupported: Frobnicate ('relu', '\(g.nodes[3].name)')") == true,
            "\(error?.message ?? "")")
  }

  /// A node output may not reuse an initializer's name (an ONNX value is assigned once): the
  /// interpreter starts from the initializers, so readers before and after that node would see
  /// different tensors, and what is prepared from an initializer by name would not be what runs.
  @Test func anOutputRedefiningAnInitializerIsRefused() throws {
    var g = smallConvGraph()
    g.nodes.insert(Node(name: "neg", opType: "Neg", inputs: ["w"], outputs: ["w"]), at: 0)
    let error = #expect(throws: LowbitError.self) { try Interpreter(g) }
    #expect(error?.description == "[Neg 'neg'] output 'w' is defined more than once")
  }

  @Test func feedsAreCheckedAgainstTheDeclaredInputs() throws {
    let interpreter = try Interpreter(smallConvGraph())
    let wrongShape = #expect(throws: LowbitError.self) { try interpreter.run(["x": randomTensor([2, 3, 5, 5], seed: 1)]) }
    #expect(wrongShape?.message.contains("[N, 2, 5, 5]") == true)
    #expect(throws: LowbitError.self) { try interpreter.run(["x": Tensor(shape: [2, 2, 5, 5], ints: Array(repeating: 1, count: 100))]) }
    #expect(throws: LowbitError.self) { try interpreter.run([:]) }
  }

  @Test func shapeSubgraphsOverStaticDimsFold() throws {
    // y = Reshape(x, Concat(Gather(Shape(x), 0), [-1])): with a fixed batch the whole chain
    // folds away; with a symbolic one the target becomes the constant [0, -1] (copy the batch
    // dim), and the chain is dead too.
    func graph(batch: Dim) -> Graph {
      Graph(
        nodes: [
          Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
          Node(name: "gather", opType: "Gather", inputs: ["s", "zero"], outputs: ["n"]),
          Node(name: "unsq", opType: "Unsqueeze", inputs: ["n", "zero1"], outputs: ["n1"]),
          Node(name: "concat", opType: "Concat", inputs: ["n1", "minus1"], outputs: ["target"], attributes: ["axis": .int(0)]),
          Node(name: "reshape", opType: "Reshape", inputs: ["x", "target"], outputs: ["y"]),
        ],
        inputs: [ValueInfo(name: "x", dtype: .float32, shape: [batch, .fixed(3), .fixed(4)])],
        outputs: [ValueInfo(name: "y", dtype: .float32)],
        initializers: [
          "zero": Tensor(shape: [], ints: [0]), "zero1": Tensor(shape: [1], ints: [0]),
          "minus1": Tensor(shape: [1], ints: [-1]),
        ])
    }
    let dynamic = try graph(batch: .symbol("N")).simplified()
    #expect(dynamic.nodes.map(\.opType) == ["Reshape"])
    #expect(dynamic.initializers[dynamic.nodes[0].inputs[1]]?.ints == [0, -1])
    for batch in [1, 5] {
      let input = randomTensor([batch, 3, 4], seed: 2)
      #expect(try Interpreter(dynamic).run(["x": input])["y"]! == input.reshaped([batch, 12]))
    }
    let fixed = try graph(batch: .fixed(2)).simplified()
    #expect(fixed.nodes.map(\.opType) == ["Reshape"])
    #expect(fixed.valueInfo["y"]?.shape == [.fixed(2), .fixed(12)])
    let input = randomTensor([2, 3, 4], seed: 1)
    #expect(try Interpreter(fixed).run(["x": input])["y"]! == input.reshaped([2, 12]))
  }
}
