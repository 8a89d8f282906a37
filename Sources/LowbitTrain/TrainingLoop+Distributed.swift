import LowbitCore

extension TrainingLoop {
  /// One data-parallel step (see `TrainingLoop`): this rank's part of the global batch (`labels`
  /// and `feeds`, possibly empty) of `batchSize` samples in all, one `allreduce` over the
  /// weighted gradients, running statistics and metrics, then the optimizer step. Returns the
  /// loss and correct count of the global batch, the same on every rank.
  mutating func distributedStep(
    feeds: [String: Tensor], labels: [Int], batchSize: Int, learningRate: Float
  ) throws -> Trainer.StepResult {
    var computed: Trainer.StepGradients
    if labels.isEmpty {
      // A rank with no samples in this (last, small) batch contributes zeros with weight 0.
      let g = trainer.graph.initializers
      computed = Trainer.StepGradients(
        result: Trainer.StepResult(loss: 0, correct: 0),
        gradients: Dictionary(uniqueKeysWithValues: trainer.parameterNames.map { ($0, Tensor(shape: g[$0]!.shape, repeating: 0)) }),
        runningStatistics: [:])
    } else {
      computed = try trainer.gradients(feeds: feeds, labels: labels, output: output, teacher: teacher)
    }
    let weight = Float(labels.count) / Float(batchSize)
    try Self.reduce(&computed, weight: weight, trainer: trainer, collective: collective)
    try trainer.apply(computed, optimizer: &optimizer, learningRate: learningRate)
    return computed.result
  }

  /// Replaces `computed` by the sum over ranks of `weight_r * computed_r` for the gradients of
  /// `trainer.parameterNames`, the running statistics of `trainer.bufferNames` (a rank whose pass
  /// did not compute one contributes the current value) and the loss, and by the plain sum of
  /// the correct counts, in one `allreduce`. With `weight_r = n_r / N` for a rank with `n_r` of
  /// the batch's `N` samples, the mean of rank means is the global batch mean:
  /// `sum_r (n_r / N) * (1 / n_r) * sum_{i in rank r} g_i = (1 / N) * sum_i g_i`.
  static func reduce(
    _ computed: inout Trainer.StepGradients, weight: Float, trainer: Trainer, collective: any Collective
  ) throws {
    let parameters = trainer.parameterNames, buffers = trainer.bufferNames
    var statistics: [String: Tensor] = [:]
    for name in buffers { statistics[name] = computed.runningStatistics[name] ?? trainer.graph.initializers[name]! }
    var flat = try TensorCoding.flatten(computed.gradients, names: parameters)
    flat += try TensorCoding.flatten(statistics, names: buffers)
    for i in flat.indices { flat[i] *= weight }
    flat.append(computed.result.loss * weight)
    flat.append(Float(computed.result.correct))
    try collective.allreduceSum(&flat)
    let correct = Int(flat.removeLast()), loss = flat.removeLast()
    let split = flat.count - buffers.reduce(0) { $0 + statistics[$1]!.count }
    TensorCoding.unflatten(Array(flat[..<split]), into: &computed.gradients, names: parameters)
    TensorCoding.unflatten(Array(flat[split...]), into: &statistics, names: buffers)
    computed.runningStatistics = statistics
    computed.result = Trainer.StepResult(loss: loss, correct: correct)
  }

  /// The generator rank `rank` draws augmentation from during `epoch` when several ranks train:
  /// independent streams per (seed, rank, epoch), so no state needs saving across epochs and a
  /// resumed run draws the same as an uninterrupted one.
  public static func augmentationGenerator(seed: UInt64, rank: Int, epoch: Int) -> SplitMix64 {
    var base = SplitMix64.stream(0x6175_6775 ^ (UInt64(rank + 1) << 32), of: seed)
    return SplitMix64.stream(UInt64(epoch), of: base.next())
  }

  /// Throws unless every rank has the same `count` (e.g. of training samples: the shuffles and the
  /// split of each batch depend on it). Collective.
  static func checkSameCount(_ count: Int, of what: String, across collective: any Collective) throws {
    guard collective.size > 1 else { return }
    var low = [Double(count)], high = [Double(count)]
    try collective.allreduce(&low, .minimum)
    try collective.allreduce(&high, .maximum)
    guard low == high else {
      throw LowbitError.invalidInput(
        "the ranks have different numbers of \(what) (\(Int(low[0]))...\(Int(high[0])); rank \(collective.rank) has \(count)); every rank must load the same data")
    }
  }
}
