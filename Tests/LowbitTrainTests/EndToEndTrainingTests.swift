import LowbitCore
import LowbitTrain
import Testing

/// A small conv net (Conv -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm)
/// learns to tell horizontal from vertical stripes.
@Suite struct EndToEndTrainingTests {
  /// 64 noisy 8x8 stripe images: label 0 horizontal, 1 vertical, random phase and period.
  static func stripes(seed: UInt64) -> (images: Tensor, labels: [Int]) {
    var g = SplitMix64(seed: seed)
    var values: [Float] = [], labels: [Int] = []
    for i in 0..<64 {
      let label = i % 2, period = 2 + g.uniform(below: 2), phase = g.uniform(below: period)
      for y in 0..<8 {
        for x in 0..<8 {
          let t = label == 0 ? y : x
          let stripe: Float = (t + phase) % period == 0 ? 1 : -0.5
          values.append(stripe + 0.3 * (2 * g.unitFloat() - 1))
        }
      }
      labels.append(label)
    }
    return (Tensor(shape: [64, 1, 8, 8], floats: values), labels)
  }

  static func network(seed: UInt64) -> Graph {
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
        "conv.w": uniform([6, 1, 3, 3], 1 / 3), "conv.b": Tensor(shape: [6], repeating: 0),
        "bn.scale": Tensor(shape: [6], repeating: 1), "bn.bias": Tensor(shape: [6], repeating: 0),
        "bn.mean": Tensor(shape: [6], repeating: 0), "bn.var": Tensor(shape: [6], repeating: 1),
        "fc.w": uniform([2, 6], 0.4), "fc.b": Tensor(shape: [2], repeating: 0),
      ])
  }

  struct Run {
    var trainer: Trainer
    var lossBefore: Float
    var lossAfter: Float
    var stepLosses: [Float]
  }

  /// 50 SGD steps (momentum 0.9, weight decay, warm-up then cosine), batches of 16 reshuffled
  /// each epoch, random crop (pad 1) and flip.
  static func train(seed: UInt64) throws -> Run {
    let data = stripes(seed: 1)
    var trainer = try Trainer(network(seed: seed))
    func datasetLoss(_ t: Trainer) throws -> Float {
      try SoftmaxCrossEntropy(logits: t.forward(["x": data.images], mode: .training).value("logits")!, labels: data.labels).value
    }
    let before = try datasetLoss(trainer)
    var sgd = SGD(momentum: 0.9, weightDecay: 1e-4, noWeightDecay: ["conv.b", "bn.scale", "bn.bias", "fc.b"])
    let schedule = LearningRateSchedule(base: 0.2, decay: .cosine(steps: 45, minimum: 0.01), warmupSteps: 5)
    let shuffler = EpochShuffler(count: 64, seed: seed)
    var augmentationGenerator = SplitMix64(seed: seed &+ 1)
    let augmentation = ImageAugmentation(padding: 1, horizontalFlip: true)
    var losses: [Float] = []
    var epoch = 0
    while losses.count < 50 {
      for batch in shuffler.batches(epoch: epoch, batchSize: 16) where losses.count < 50 {
        let images = try augmentation.apply(to: gatherBatch(data.images, indices: batch), using: &augmentationGenerator)
        let result = try trainer.step(
          feeds: ["x": images], labels: batch.map { data.labels[$0] }, optimizer: &sgd,
          learningRate: schedule.rate(atStep: losses.count))
        losses.append(result.loss)
      }
      epoch += 1
    }
    return Run(trainer: trainer, lossBefore: before, lossAfter: try datasetLoss(trainer), stepLosses: losses)
  }

  @Test func lossFallsByHalfAndRunsAreBitwiseReproducible() throws {
    let first = try Self.train(seed: 7)
    print("end-to-end: dataset loss \(first.lossBefore) -> \(first.lossAfter); step losses \(first.stepLosses.first!) -> \(first.stepLosses.suffix(5))")
    #expect(first.lossAfter <= first.lossBefore / 2)
    #expect(first.stepLosses.allSatisfy { $0.isFinite })
    let second = try Self.train(seed: 7)
    #expect(second.trainer.graph.initializers == first.trainer.graph.initializers)  // bitwise, buffers too
    #expect(second.stepLosses == first.stepLosses)
    let other = try Self.train(seed: 8)
    #expect(other.trainer.parameters != first.trainer.parameters)
    #expect(first.trainer.graph.initializers["bn.mean"] != Tensor(shape: [6], repeating: 0))  // statistics moved
  }
}
