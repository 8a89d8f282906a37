import LowbitCore
import LowbitData
@testable import LowbitTrain
import Testing

/// The `Collective` abstraction and data-parallel training on in-process ranks (threads): the
/// single-process collective changes nothing, tensor broadcasts and reductions are exact, the
/// weighted mean of rank gradients is the global batch gradient, and ranks training together
/// end with identical parameters.
@Suite struct CollectiveTests {
  @Test func singleProcessLeavesEverythingAsItIs() throws {
    let c = SingleProcess()
    #expect(c.rank == 0 && c.size == 1 && c.isRoot)
    var floats: [Float] = [1, -2, .infinity], doubles: [Double] = [0.5, 3]
    for op in ReduceOperation.allCases {
      try c.allreduce(&floats, op)
      try c.allreduce(&doubles, op)
    }
    #expect(floats == [1, -2, .infinity] && doubles == [0.5, 3])
    var bytes: [UInt8] = [1, 2, 3]
    try c.broadcast(&bytes, root: 0)
    #expect(bytes == [1, 2, 3])
    #expect(throws: LowbitError.self) { try c.broadcast(&bytes, root: 1) }
    var tensors = ["w": Tensor(shape: [2], floats: [1, 2])]
    try c.average(&tensors)
    try c.broadcast(&tensors)
    #expect(tensors == ["w": Tensor(shape: [2], floats: [1, 2])])
    #expect(c.share(of: 7) == 0..<7)
    try c.barrier()
  }

  /// Law: the shares of `count` over `size` ranks tile `0..<count` in rank order, sizes differing
  /// by at most one.
  @Test func sharesTileTheRange() {
    for size in 1...5 {
      for count in 0...23 {
        let shares = (0..<size).map { rank in Share(rank: rank, size: size).share(of: count) }
        #expect(shares.first!.lowerBound == 0 && shares.last!.upperBound == count)
        for (a, b) in zip(shares, shares.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
        let sizes = shares.map(\.count)
        #expect(sizes.max()! - sizes.min()! <= 1)
      }
    }
  }

  struct Share: Collective {
    let rank: Int, size: Int
    func allreduce(_ values: inout [Float], _ operation: ReduceOperation) throws {}
    func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws {}
    func broadcast(_ bytes: inout [UInt8], root: Int) throws {}
    func barrier() throws {}
  }

  @Test func tensorsBroadcastExactlyAndReduceByName() throws {
    let root: [String: Tensor] = [
      "w": Tensor(shape: [2, 2], floats: [1, -0.0, .leastNonzeroMagnitude, .nan]),
      "shape": Tensor(dtype: .int64, shape: [3], storage: .int([1, -7, .max])),
      "mask": Tensor(shape: [2], bools: [true, false]),
      "empty": Tensor(shape: [0, 4], floats: []),
      "ünïcode name": Tensor(scalar: 3),
    ]
    let results = try InProcessGroup(size: 3).run { c -> ([String: Tensor], [String: Tensor], [Double]) in
      var mine: [String: Tensor] = c.rank == 1 ? root : ["junk": Tensor(scalar: Float(c.rank))]
      try c.broadcast(&mine, root: 1)
      var graph = Graph(nodes: [], initializers: c.rank == 0 ? ["a": Tensor(scalar: 5)] : [:])
      try c.broadcastInitializers(of: &graph)
      var g = ["a": Tensor(shape: [2], floats: [Float(c.rank), 1]), "b": Tensor(scalar: Float(c.rank * 10))]
      try c.average(&g, weight: [0.5, 0.25, 0.25][c.rank])
      var mm = [Double(c.rank), -Double(c.rank)]
      try c.allreduce(&mm, .maximum)
      return (mine, graph.initializers.merging(g.mapKeys { "avg." + $0 }) { a, _ in a }, mm)
    }
    for (rank, (received, reduced, mm)) in results.enumerated() {
      #expect(received.keys.sorted() == root.keys.sorted(), "rank \(rank)")
      for (name, t) in root {
        #expect(received[name]!.dtype == t.dtype && received[name]!.shape == t.shape)
        if t.dtype.isFloatingPoint { #expect(received[name]!.floats.map(\.bitPattern) == t.floats.map(\.bitPattern)) }
        else { #expect(received[name]! == t) }
      }
      #expect(reduced["a"] == Tensor(scalar: 5))
      #expect(reduced["avg.a"] == Tensor(shape: [2], floats: [0.75, 1]))  // 0.5*0 + 0.25*1 + 0.25*2
      #expect(reduced["avg.b"] == Tensor(scalar: 7.5))
      #expect(mm == [2, 0])
    }
  }

  /// x [N, 4] -> Gemm -> [N, 3] logits: no BatchNorm, so the gradient of the global batch mean
  /// does not depend on how the batch is split.
  static func linear() -> Graph {
    var g = SplitMix64(seed: 9)
    return Graph(
      nodes: [Node(name: "fc", opType: "Gemm", inputs: ["x", "w", "b"], outputs: ["logits"], attributes: ["transB": .int(1)])],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
      outputs: [ValueInfo(name: "logits")],
      initializers: [
        "w": Tensor(shape: [3, 4], floats: (0..<12).map { _ in 2 * g.unitFloat() - 1 }),
        "b": Tensor(shape: [3], floats: [0.1, -0.2, 0.3]),
      ])
  }

  /// Law: `sum_r (n_r / N) * meanGradient(part_r) == meanGradient(batch)` for any split, here
  /// 7 samples over 2 ranks (3 + 4) and over 3 ranks (2 + 2 + 3).
  @Test func weightedRankGradientsAreTheGlobalBatchGradient() throws {
    var g = SplitMix64(seed: 4)
    let n = 7
    let x = Tensor(shape: [n, 4], floats: (0..<(n * 4)).map { _ in 2 * g.unitFloat() - 1 })
    let labels = (0..<n).map { $0 % 3 }
    let trainer = try Trainer(Self.linear())
    let full = try trainer.gradients(feeds: ["x": x], labels: labels)
    for size in [2, 3] {
      let results = try InProcessGroup(size: size).run { c -> Trainer.StepGradients in
        let part = Array(c.share(of: n))
        var mine = try trainer.gradients(feeds: ["x": gatherBatch(x, indices: part)], labels: part.map { labels[$0] })
        try TrainingLoop.reduce(&mine, weight: Float(part.count) / Float(n), trainer: trainer, collective: c)
        return mine
      }
      for r in results {
        #expect(abs(r.result.loss - full.result.loss) < 1e-5)
        #expect(r.result.correct == full.result.correct)
        for name in trainer.parameterNames {
          for (a, b) in zip(r.gradients[name]!.floats, full.gradients[name]!.floats) { #expect(abs(a - b) < 1e-6, "\(name)") }
        }
        #expect(r.gradients == results[0].gradients)  // the same bits on every rank
      }
    }
  }

  /// Two ranks train the stripes network (BatchNorm, augmentation, a last batch of 16 split 8 + 8):
  /// identical parameters, statistics and optimizer state on both, the loss falls, and a run
  /// resumed from rank 0's checkpoint after epoch 1 ends bitwise-equal to the straight run.
  @Test func twoRanksStayIdenticalAndResumeExactly() throws {
    let train = try TrainingLoopTests.stripes(count: 96, seed: 1), test = try TrainingLoopTests.stripes(count: 30, seed: 2)
    let config = TrainingLoopTests.config(epochs: 3)
    let group = InProcessGroup(size: 2)
    let straight = try group.run { c -> TrainingLoop in
      var network = TrainingLoopTests.network()
      if c.rank == 1 { network.initializers["fc.w"] = Tensor(shape: [3, 8], repeating: 0) }  // replaced by rank 0's
      var loop = try TrainingLoop(graph: network, training: train, config: config, collective: c)
      try loop.run(validation: test)
      return loop
    }
    #expect(straight[0].trainer.graph.initializers == straight[1].trainer.graph.initializers)
    #expect(straight[0].optimizer == straight[1].optimizer)
    #expect(straight[0].history.map(\.loss) == straight[1].history.map(\.loss))
    #expect(straight[0].history.map(\.evalTop1) == straight[1].history.map(\.evalTop1))
    #expect(straight[0].augmentationGenerator != straight[1].augmentationGenerator)
    #expect(straight[0].history.last!.loss < straight[0].history.first!.loss)
    #expect(straight[0].checkpoint().ranks == 2)

    let resumed = try group.run { c -> TrainingLoop in
      var first = try TrainingLoop(graph: TrainingLoopTests.network(), training: train, config: config, collective: c)
      try first.trainEpoch()
      // Rank 0's file is the one every rank resumes from.
      var shared = c.rank == 0 ? try first.checkpoint().encoded() : []
      try c.broadcast(&shared, root: 0)
      var loop = try TrainingLoop(resuming: Checkpoint(decoding: shared, source: "memory"), graph: TrainingLoopTests.network(), training: train, collective: c)
      try loop.run(validation: test)
      return loop
    }
    for r in resumed {
      #expect(r.trainer.graph.initializers == straight[0].trainer.graph.initializers)
      #expect(r.optimizer == straight[0].optimizer)
      #expect(r.history.dropFirst().map(\.loss) == straight[0].history.dropFirst().map(\.loss))
    }
  }

  @Test func ranksWithDifferentDataAreAClearError() throws {
    let results = try InProcessGroup(size: 2).run { c -> String in
      let train = try TrainingLoopTests.stripes(count: c.rank == 0 ? 96 : 90, seed: 1)
      do {
        _ = try TrainingLoop(graph: TrainingLoopTests.network(), training: train, config: TrainingLoopTests.config(epochs: 2), collective: c)
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    for message in results { #expect(message.contains("different numbers of training samples"), "\(message)") }
  }
}

extension Dictionary {
  fileprivate func mapKeys(_ transform: (Key) -> Key) -> [Key: Value] {
    Dictionary(uniqueKeysWithValues: map { (transform($0.key), $0.value) })
  }
}
