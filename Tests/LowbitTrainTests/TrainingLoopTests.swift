import LowbitCore
import LowbitData
import LowbitTrain
import Testing

/// `TrainingLoop` and `Checkpoint`: the loss falls on a small problem, a run interrupted after
/// an epoch and resumed from its checkpoint ends bitwise-equal to the uninterrupted run, and
/// checkpoints round-trip exactly and reject damaged files.
@Suite struct TrainingLoopTests {
  /// `count` noisy 8x8 stripe images: label 0 horizontal, 1 vertical, 2 checkerboard.
  static func stripes(count: Int, seed: UInt64) throws -> Dataset {
    var g = SplitMix64(seed: seed)
    var values: [Float] = [], labels: [Int64] = []
    for i in 0..<count {
      let label = i % 3, period = 2 + g.uniform(below: 2), phase = g.uniform(below: period)
      for y in 0..<8 {
        for x in 0..<8 {
          let t = label == 0 ? y : label == 1 ? x : x + y
          let on = label == 2 ? (x / 2 + y / 2) % 2 == 0 : (t + phase) % period == 0
          values.append((on ? 1 : -0.5) + 0.3 * (2 * g.unitFloat() - 1))
        }
      }
      labels.append(Int64(label))
    }
    return try Dataset(
      inputs: [(nil, Tensor(shape: [count, 1, 8, 8], floats: values))], labels: Tensor(shape: [count], ints: labels),
      source: "stripes")
  }

  /// Conv -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm, 3 classes.
  static func network(seed: UInt64 = 3) -> Graph {
    var g = SplitMix64(seed: seed)
    func uniform(_ shape: [Int], _ bound: Float) -> Tensor {
      Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in bound * (2 * g.unitFloat() - 1) })
    }
    return Graph(
      nodes: [
        Node(name: "conv", opType: "Conv", inputs: ["x", "conv.w", "conv.b"], outputs: ["c"], attributes: ["pads": .ints([1, 1, 1, 1])]),
        Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], outputs: ["n"]),
        Node(name: "relu", opType: "Relu", inputs: ["n"], outputs: ["r"]),
        Node(name: "pool", opType: "GlobalAveragePool", inputs: ["r"], outputs: ["p"]),
        Node(name: "flatten", opType: "Flatten", inputs: ["p"], outputs: ["f"]),
        Node(name: "fc", opType: "Gemm", inputs: ["f", "fc.w", "fc.b"], outputs: ["logits"], attributes: ["transB": .int(1)]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(8), .fixed(8)])],
      outputs: [ValueInfo(name: "logits")],
      initializers: [
        "conv.w": uniform([8, 1, 3, 3], 1 / 3), "conv.b": Tensor(shape: [8], repeating: 0),
        "bn.scale": Tensor(shape: [8], repeating: 1), "bn.bias": Tensor(shape: [8], repeating: 0),
        "bn.mean": Tensor(shape: [8], repeating: 0), "bn.var": Tensor(shape: [8], repeating: 1),
        "fc.w": uniform([3, 8], 0.4), "fc.b": Tensor(shape: [3], repeating: 0),
      ])
  }

  static func config(epochs: Int, optimizer: OptimizerKind = .sgd, augment: Bool = true) -> TrainingConfig {
    var c = TrainingConfig(epochs: epochs)
    c.batchSize = 20  // 96 samples: 4 full batches and one of 16
    c.learningRate = optimizer == .sgd ? 0.2 : 0.01
    c.optimizer = optimizer
    c.weightDecay = 1e-4
    c.warmupEpochs = 1
    c.augment = augment
    c.seed = 11
    return c
  }

  @Test func lossFallsOnStripesAndValidationImproves() throws {
    let train = try Self.stripes(count: 96, seed: 1), test = try Self.stripes(count: 48, seed: 2)
    var loop = try TrainingLoop(graph: Self.network(), training: train, config: Self.config(epochs: 6))
    #expect(loop.augmentation == ImageAugmentation(padding: 2, horizontalFlip: true))
    #expect(loop.stepsPerEpoch == 5)
    let before = try loop.evaluate(test, batchSize: 32)
    var seen: [Int] = []
    try loop.run(validation: test, onEpoch: { _, result in seen.append(result.epoch) })
    let after = try loop.evaluate(test, batchSize: 32)
    print("training loop: eval loss \(before.loss) -> \(after.loss), top-1 \(before.top1) -> \(after.top1); train losses \(loop.history.map(\.loss))")
    #expect(seen == [1, 2, 3, 4, 5, 6])
    #expect(loop.step == 30 && loop.isFinished)
    #expect(loop.history.last!.loss < loop.history.first!.loss)
    #expect(after.loss < before.loss / 2)
    #expect(after.top1 >= 90)
    #expect(loop.history.last!.evalTop1 == after.top1)
    #expect(loop.trainer.graph.initializers["bn.mean"] != Tensor(shape: [8], repeating: 0))  // statistics moved
  }

  /// Trains `epochs` epochs straight, and again stopping after `k`, going through the encoded
  /// checkpoint bytes, and resuming: the two must agree bit for bit.
  func expectExactResume(_ config: TrainingConfig, after k: Int) throws {
    let train = try Self.stripes(count: 96, seed: 1), test = try Self.stripes(count: 30, seed: 2)
    var straight = try TrainingLoop(graph: Self.network(), training: train, config: config)
    try straight.run(validation: test)

    var first = try TrainingLoop(graph: Self.network(), training: train, config: config)
    var checkpoint: Checkpoint?
    struct Interrupted: Error {}
    do {
      try first.run(validation: test, onEpoch: { loop, result in
        if result.epoch == k {
          checkpoint = loop.checkpoint()
          throw Interrupted()
        }
      })
    } catch is Interrupted {}
    let bytes = try #require(checkpoint).encoded()
    let restored = try Checkpoint(decoding: bytes, source: "memory")
    #expect(restored.epoch == k)
    var resumed = try TrainingLoop(resuming: restored, graph: Self.network(), training: train)
    #expect(resumed.epoch == k && resumed.step == k * resumed.stepsPerEpoch)
    try resumed.run(validation: test)

    #expect(resumed.trainer.graph.initializers == straight.trainer.graph.initializers)  // parameters and statistics
    #expect(resumed.optimizer == straight.optimizer)
    #expect(resumed.augmentationGenerator == straight.augmentationGenerator)
    #expect(resumed.history.map(\.loss) == straight.history.map(\.loss))
    #expect(resumed.history.map(\.evalTop1) == straight.history.map(\.evalTop1))
    #expect(resumed.step == straight.step && resumed.epoch == straight.epoch)
  }

  @Test func resumingAfterAnEpochIsBitwiseEqualToTheStraightRun() throws {
    try expectExactResume(Self.config(epochs: 3), after: 1)
    try expectExactResume(Self.config(epochs: 3, optimizer: .adam), after: 2)
    try expectExactResume(Self.config(epochs: 2, augment: false), after: 1)
  }

  @Test func checkpointsRoundTripExactly() throws {
    // Momentum buffers holding awkward floats: subnormals, extremes, -0, long mantissas.
    var g = SplitMix64(seed: 5)
    var awkward: [Float] = [0, .leastNonzeroMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude, 0.1, 1 / 3]
    while awkward.count < 4000 {
      let f = Float(bitPattern: UInt32(truncatingIfNeeded: g.next()))
      if f.isFinite { awkward.append(f) }
    }
    var sgd = SGD(momentum: 0.9)
    var params = ["w": Tensor(shape: [40, 100], repeating: 0)]
    try sgd.update(&params, gradients: ["w": Tensor(shape: [40, 100], floats: awkward)], learningRate: 0)  // v = g
    #expect(sgd.velocity["w"]!.map(\.bitPattern) == awkward.map(\.bitPattern))
    var config = Self.config(epochs: 5)
    config.seed = .max
    let checkpoint = Checkpoint(
      config: config, epoch: 2, step: 10, samples: 96, dataSource: "stripes",
      augmentationGenerator: SplitMix64(seed: 0xFFFF_FFFF_FFFF_FFF0), history: [], optimizer: .sgd(sgd),
      parameters: ["w": Tensor(shape: [40, 100], floats: awkward), "empty": Tensor(shape: [0, 3], floats: [])],
      statistics: ["bn.var": Tensor(shape: [3], floats: [1, -0.0, 3])])
    let bytes = try checkpoint.encoded()
    let back = try Checkpoint(decoding: bytes, source: "memory")
    #expect(back == checkpoint)
    guard case .sgd(let restored) = back.optimizer else { Issue.record("optimizer kind changed"); return }
    #expect(restored.velocity["w"]!.map(\.bitPattern) == awkward.map(\.bitPattern))
    #expect(back.parameters["w"]!.floats.map(\.bitPattern) == awkward.map(\.bitPattern))
    #expect(back.statistics["bn.var"]!.floats.map(\.bitPattern) == ([1, -0.0, 3] as [Float]).map(\.bitPattern))
    #expect(try back.encoded() == bytes)

    // Truncated, damaged, or not a checkpoint at all: a clear error, never a crash.
    for broken in [Array(bytes.prefix(bytes.count / 2)), Array(bytes.prefix(20)), [UInt8](), Array("hello".utf8)] {
      #expect(throws: LowbitError.self) { try Checkpoint(decoding: broken, source: "broken") }
    }
    var flipped = bytes
    flipped[bytes.count / 2] ^= 0x10
    let error = try #require(throws: LowbitError.self) { try Checkpoint(decoding: flipped, source: "flipped.ckpt") }
    #expect("\(error)".contains("flipped.ckpt") && "\(error)".contains("hash"))
  }

  @Test func resumingOntoAnotherModelOrOtherDataThrows() throws {
    let train = try Self.stripes(count: 96, seed: 1)
    var loop = try TrainingLoop(graph: Self.network(), training: train, config: Self.config(epochs: 2))
    try loop.trainEpoch()
    let checkpoint = loop.checkpoint()
    var other = Self.network()
    other.initializers["fc.w"] = Tensor(shape: [3, 8, 1], repeating: 0)
    other.nodes[5].opType = "MatMul"
    #expect(throws: LowbitError.self) { try TrainingLoop(resuming: checkpoint, graph: other, training: train) }
    #expect(throws: LowbitError.self) {
      try TrainingLoop(resuming: checkpoint, graph: Self.network(), training: Self.stripes(count: 90, seed: 1))
    }
  }

  @Test func badConfigsAndDataAreClearErrors() throws {
    let train = try Self.stripes(count: 12, seed: 1)
    for change in [{ (c: inout TrainingConfig) in c.epochs = 0 }, { $0.batchSize = 0 }, { $0.learningRate = -1 }, { $0.warmupEpochs = 5 }] {
      var c = Self.config(epochs: 2)
      change(&c)
      #expect(throws: LowbitError.self) { try TrainingLoop(graph: Self.network(), training: train, config: c) }
    }
    let unlabelled = try Dataset(columns: train.inputs, source: "no-labels")
    let error = try #require(throws: LowbitError.self) {
      try TrainingLoop(graph: Self.network(), training: unlabelled, config: Self.config(epochs: 2))
    }
    #expect("\(error)".contains("no labels"))
    let outOfRange = try Dataset(columns: train.inputs, labels: Tensor(shape: [12], ints: Array(repeating: 7, count: 12)), source: "bad-labels")
    #expect(throws: LowbitError.self) { try TrainingLoop(graph: Self.network(), training: outOfRange, config: Self.config(epochs: 2)) }
    var flat = Self.network()  // logits [N, 3, 1, 1]: not [N, classes]
    flat.nodes = Array(flat.nodes.prefix(4))
    flat.outputs = [ValueInfo(name: "p")]
    #expect(throws: LowbitError.self) { try TrainingLoop(graph: flat, training: train, config: Self.config(epochs: 2)) }
  }
}
