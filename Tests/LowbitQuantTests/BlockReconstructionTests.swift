import Foundation
import LowbitCore
@testable import LowbitTrain
import LowbitTestSupport
import Testing

@testable import LowbitQuant

/// `x -> conv1 -> Relu -> conv2 -> Add(x) -> Relu -> conv3 -> head -> y`: a residual block and a
/// layer. A PRelu head reads a per-channel slope; a Round head has no gradient rule.
func residualGraph(channels: Int = 4, outputs: Int = 5, seed: UInt64 = 11, head: String = "Identity") -> Graph {
  func conv(_ name: String, _ x: String, _ w: String, _ b: String, _ out: String, pad: Int) -> Node {
    Node(name: name, opType: "Conv", inputs: [x, w, b], outputs: [out],
         attributes: ["kernel_shape": .ints([3, 3]), "pads": .ints([pad, pad, pad, pad])])
  }
  return Graph(
    nodes: [
      conv("conv1", "x", "w1", "b1", "h1", pad: 1),
      Node(name: "relu1", opType: "Relu", inputs: ["h1"], outputs: ["a1"]),
      conv("conv2", "a1", "w2", "b2", "h2", pad: 1),
      Node(name: "add", opType: "Add", inputs: ["h2", "x"], outputs: ["s"]),
      Node(name: "relu2", opType: "Relu", inputs: ["s"], outputs: ["r"]),
      conv("conv3", "r", "w3", "b3", "z", pad: 0),
      Node(name: "head", opType: head, inputs: head == "PRelu" ? ["z", "slope"] : ["z"], outputs: ["y"]),
    ],
    inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(channels), .fixed(8), .fixed(8)])],
    outputs: [ValueInfo(name: "y", dtype: .float32)],
    initializers: [
      "w1": randomTensor([channels, channels, 3, 3], seed: seed, in: -0.5...0.5),
      "b1": randomTensor([channels], seed: seed + 1, in: -0.2...0.5),
      "w2": randomTensor([channels, channels, 3, 3], seed: seed + 2, in: -0.5...0.5),
      "b2": randomTensor([channels], seed: seed + 3, in: -0.2...0.2),
      "w3": randomTensor([outputs, channels, 3, 3], seed: seed + 4, in: -0.5...0.5),
      "b3": randomTensor([outputs], seed: seed + 5, in: -0.2...0.2),
    ].merging(head == "PRelu" ? ["slope": randomTensor([outputs, 1, 1], seed: seed + 6, in: 0.05...0.3)] : [:]) { a, _ in a })
}

@Suite struct SoftRoundingTests {
  func node() -> Node {
    SoftRounding.node(name: "r", variables: "v", floor: "f", scale: "s", zeroPoint: "z", output: "w", qmin: -8, qmax: 7)
  }

  /// `w = s (clip(floor + h(V) + z, qmin, qmax) - z)`; V = +-10 rounds hard up or down.
  @Test func forwardIsTheSoftQuantizedWeight() throws {
    let v: [Float] = [0, -10, 10, 1.5, 10]
    let f: [Float] = [2, 2, 2, -3, 7]
    let s: [Float] = [0.5, 0.5, 0.5, 0.25, 0.1]
    let z: [Float] = [0, 0, 0, 1, 0]
    let inputs = [v, f, s, z].map { Tensor(shape: [5], floats: $0) }
    let w = try SoftRounding.forward(KernelContext(node: node(), inputs: inputs, opset: 17))[0].floats
    for i in 0..<5 {
      let h = SoftRounding.rectifiedSigmoid(v[i])
      let expected = s[i] * (min(max(f[i] + h + z[i], -8), 7) - z[i])
      #expect(abs(w[i] - expected) <= 1e-6, "\(i): \(w[i]) vs \(expected)")
    }
    #expect(w[1] == 1 && w[2] == 1.5, "hard rounding: \(w[1]) \(w[2])")
    #expect(w[4] == s[4] * 7, "clipped at qmax: \(w[4])")
  }

  /// The V gradient matches central differences where h and the grid are not clipped, and is 0
  /// where they are.
  @Test func gradientMatchesFiniteDifferences() throws {
    let v: [Float] = [-1.2, 0.3, 1.9, 10, 0.5]
    let f: [Float] = [1, -2, 0, 3, 7]
    let s: [Float] = [0.3, 0.7, 1.1, 0.5, 0.2]
    let z: [Float] = [0, 0, 0, 0, 0]
    let g: [Float] = [1, -2, 0.5, 1, 1]
    func forward(_ vs: [Float]) throws -> [Float] {
      let inputs = [vs, f, s, z].map { Tensor(shape: [5], floats: $0) }
      return try SoftRounding.forward(KernelContext(node: node(), inputs: inputs, opset: 17))[0].floats
    }
    let inputs = [v, f, s, z].map { Tensor(shape: [5], floats: $0) }
    let ctx = KernelContext(node: node(), inputs: inputs, opset: 17)
    let outputs = try SoftRounding.forward(ctx)
    let dv = try SoftRounding.backward(BackwardContext(
      forward: ctx, outputs: outputs, outputGradients: [Tensor(shape: [5], floats: g)],
      needsGradient: [true, false, false, false], saved: nil))[0]!.floats
    for i in 0..<3 {
      var up = v, down = v
      up[i] += 1e-2
      down[i] -= 1e-2
      let numeric = (try forward(up)[i] - forward(down)[i]) / 2e-2 * g[i]
      #expect(abs(dv[i] - numeric) <= 2e-3 * max(1, abs(numeric)), "\(i): \(dv[i]) vs \(numeric)")
    }
    #expect(dv[3] == 0, "h clipped at 1")
    #expect(dv[4] == 0, "grid position at qmax")
  }
}

@Suite struct ReconstructionBlockTests {
  /// The residual block is one block (loss after the second ReLU); the last layer another.
  @Test func residualBlockIsOneBlock() throws {
    let g = try residualGraph().validated()
    let blocks = ReconstructionBlock.partition(g, layers: ["conv1", "conv2", "conv3"], maxLayers: 8)
    #expect(blocks.map(\.nodes) == [0..<5, 5..<7])
    #expect(blocks.map(\.layers) == [["conv1", "conv2"], ["conv3"]])
    #expect(blocks[0].inputs == ["x"] && blocks[0].outputs == ["r"])
    #expect(blocks[1].inputs == ["r"] && blocks[1].outputs == ["y"])
  }

  /// One layer per block: the residual block splits at conv2, whose block also reads the skip.
  @Test func oneLayerPerBlockSplitsInsideTheResidual() throws {
    let g = try residualGraph().validated()
    let blocks = ReconstructionBlock.partition(g, layers: ["conv1", "conv2", "conv3"], maxLayers: 1)
    #expect(blocks.map(\.nodes) == [0..<2, 2..<5, 5..<7])
    #expect(blocks[0].outputs == ["a1"])
    #expect(blocks[1].inputs == ["a1", "x"] && blocks[1].outputs == ["r"])
  }

  /// A lone layer followed by its activation joins the next layers (a plain conv + ReLU, an
  /// inverted bottleneck's expansion), up to the next linear output.
  @Test func loneActivatedLayerJoinsTheNext() throws {
    let g = try twoConvGraph().validated()
    let blocks = ReconstructionBlock.partition(g, layers: ["conv1", "conv2"], maxLayers: 8)
    #expect(blocks.map(\.layers) == [["conv1", "conv2"]])
  }
}

@Suite struct BlockReconstructionTests {
  func quantizers(_ g: Graph) -> [String: TensorQuantizer] { perTensorQuantizers(g, bits: 4) }

  /// Every learned weight is floor(w/s) s or ceil(w/s) s, and the summed block reconstruction
  /// error is below round-to-nearest's.
  @Test func learnedRoundingIsFloorOrCeilAndBeatsNearest() throws {
    let graph = residualGraph()
    let q = quantizers(graph)
    var options = AdaRoundOptions()
    options.unit = .block
    options.iterations = 300
    options.blockBatchSize = 8
    let outcome = try BlockReconstruction.run(
      graph, sites: weightSites(graph), quantizers: q, batches: inputBatches(4), options: options)
    guard case .success(let result) = outcome else { Issue.record("fell back: \(outcome)"); return }
    #expect(result.blocks.map(\.layers) == [["conv1", "conv2"], ["conv3"]])
    for name in ["w1", "w2", "w3"] {
      let s = q[name]!.params[0].scale
      for (a, b) in zip(result.graph.initializers[name]!.floats, graph.initializers[name]!.floats) {
        let f = (b / s).rounded(.down) * s, c = ((b / s).rounded(.down) + 1) * s
        #expect(abs(a - f) <= 1e-6 * abs(f) + 1e-7 || abs(a - c) <= 1e-6 * abs(c) + 1e-7, "\(name): \(a) from \(b)")
      }
    }
    let nearest = result.blocks.map(\.nearestError).reduce(0, +), learned = result.blocks.map(\.adaRoundError).reduce(0, +)
    #expect(learned < nearest, "\(learned) vs nearest \(nearest)")
    #expect(result.blocks.allSatisfy { $0.flipped > 0 })
  }

  /// A block whose learned rounding loses to round-to-nearest on the held-out samples (four Adam
  /// steps of size 50 throw V about) keeps round-to-nearest: its weights are `q.fakeQuantize(w)`.
  @Test func aLosingBlockKeepsNearest() throws {
    let graph = residualGraph()
    let q = quantizers(graph)
    var options = AdaRoundOptions()
    options.unit = .block
    options.iterations = 4
    options.learningRate = 50
    options.blockBatchSize = 8
    let outcome = try BlockReconstruction.run(
      graph, sites: weightSites(graph), quantizers: q, batches: inputBatches(4), options: options)
    guard case .success(let result) = outcome else { Issue.record("fell back: \(outcome)"); return }
    #expect(result.blocks.allSatisfy { $0.keptNearest == true && $0.adaRoundError > $0.nearestError && $0.flipped == 0 },
            "\(result.blocks)")
    for name in ["w1", "w2", "w3"] {
      let w = graph.initializers[name]!
      #expect(result.graph.initializers[name]!.floats == q[name]!.fakeQuantize(w.floats, shape: w.shape), "\(name)")
    }
  }

  /// The same seed gives the same weights.
  @Test func seededRunsAgree() throws {
    let graph = residualGraph()
    var options = AdaRoundOptions()
    options.iterations = 40
    options.blockBatchSize = 4
    func weights() throws -> [Tensor] {
      guard case .success(let r) = try BlockReconstruction.run(
        graph, sites: weightSites(graph), quantizers: quantizers(graph), batches: inputBatches(2), options: options)
      else { return [] }
      return ["w1", "w2", "w3"].map { r.graph.initializers[$0]! }
    }
    #expect(try weights() == weights())
  }

  /// A block with an op that has no gradient rule is refused by name, and the pipeline falls
  /// back to layer-wise AdaRound and says why.
  @Test func blockWithoutGradientRuleFallsBackToLayers() throws {
    let graph = residualGraph(head: "Round")
    var options = AdaRoundOptions()
    options.iterations = 10
    let outcome = try BlockReconstruction.run(
      graph, sites: weightSites(graph), quantizers: quantizers(graph), batches: inputBatches(1), options: options)
    guard case .failure(let reason) = outcome else { Issue.record("expected a fallback"); return }
    #expect(reason.message.contains("'head' (Round)"), "\(reason.message)")

    var config = QuantConfig()
    config.weightBits = 4
    config.adaRoundOptions.unit = .block
    config.adaRoundOptions.iterations = 10
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: inputBatches(2))
    let step = try #require(result.steps.first { $0.step == "adaround" })
    #expect(step.detail?.contains("layer-wise (no block reconstruction: node 'head' (Round)") == true, "\(step.detail ?? "")")
    #expect(result.blocks.isEmpty && result.layers.count == 3)
  }

  /// A block that reads a value that is not a float batch (here a shape fed as a graph input,
  /// which no simplification can make constant) is refused before any block runs, naming the
  /// node and the value.
  @Test func integerValueEnteringABlockIsRefusedUpFront() throws {
    var graph = residualGraph()
    graph.nodes[graph.nodes.count - 1] = Node(name: "head", opType: "Reshape", inputs: ["z", "target"], outputs: ["y"])
    graph.inputs.append(ValueInfo(name: "target", dtype: .int64, shape: [.fixed(2)]))
    let blocks = ReconstructionBlock.partition(graph, layers: ["conv1", "conv2", "conv3"], maxLayers: 8)
    let reason = try #require(BlockReconstruction.obstacle(graph, blocks: blocks, weights: ["w1", "w2", "w3"]))
    #expect(reason == "node 'head' (Reshape) reads 'target' (int64), not a float batch of samples", "\(reason)")
  }
}
