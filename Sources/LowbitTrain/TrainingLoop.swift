import Foundation
import LowbitCore
import LowbitData

/// What one epoch measured.
public struct EpochResult: Codable, Sendable, Equatable {
  /// 1-based epoch number.
  public var epoch: Int
  /// Mean training loss over the epoch's samples (each batch weighted by its size), measured
  /// before each step's update, on augmented data, BatchNorm in training mode.
  public var loss: Double
  /// Training top-1 in percent, from the same forward passes as `loss`.
  public var trainTop1: Double
  /// Validation loss and top-1 in percent (BatchNorm in inference mode), when validated.
  public var evalLoss: Double?
  public var evalTop1: Double?
  /// The learning rate of the epoch's last step.
  public var learningRate: Double
  /// Wall-clock seconds of the training passes (validation excluded) and their throughput.
  public var seconds: Double
  public var samplesPerSecond: Double

  enum CodingKeys: String, CodingKey {
    case epoch, loss, seconds
    case trainTop1 = "train_top1", evalLoss = "eval_loss", evalTop1 = "eval_top1"
    case learningRate = "learning_rate", samplesPerSecond = "samples_per_second"
  }

  /// Writes every key, the validation ones as null when there was no validation.
  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(epoch, forKey: .epoch)
    try c.encode(loss, forKey: .loss)
    try c.encode(trainTop1, forKey: .trainTop1)
    try c.encode(evalLoss, forKey: .evalLoss)
    try c.encode(evalTop1, forKey: .evalTop1)
    try c.encode(learningRate, forKey: .learningRate)
    try c.encode(seconds, forKey: .seconds)
    try c.encode(samplesPerSecond, forKey: .samplesPerSecond)
  }
}

/// Supervised classification training of a float graph over a `Dataset`, epoch by epoch:
/// each epoch visits the samples in the order of `EpochShuffler(count:seed:)` for that epoch, in
/// batches of `batchSize`; a batch is gathered, augmented (`ImageAugmentation`, drawing from one
/// generator that runs on across epochs), and fed to `Trainer.step` (BatchNorm in training mode,
/// softmax cross-entropy of the first output against the labels, one optimizer step at the
/// schedule's rate for the step count so far). Validation runs the graph with BatchNorm in
/// inference mode (the ONNX semantics).
///
/// The loop is a value holding all of its state (parameters and running statistics in
/// `trainer.graph`, optimizer state, step and epoch counts, the augmentation generator), so
/// `checkpoint()` after an epoch and `init(resuming:graph:training:)` continue bit for bit.
///
/// Data parallelism: with a `collective` of K > 1 ranks (e.g. K processes under `mpirun`), every
/// rank holds the whole data set and runs the same loop. The initializers of rank 0 are
/// broadcast at the start, so every rank starts from identical parameters. Each global batch of
/// `batchSize` (the same shuffle on every rank) is split into contiguous parts
/// (`Collective.share(of:)`); each rank runs forward and backward on its part, and one
/// `allreduce` per step sums the rank's mean gradient and its new BatchNorm running statistics,
/// each weighted by the rank's share of the batch `n_r / N`, together with its loss and correct
/// count. The sums are the mean gradient over the global batch, and running statistics and
/// metrics over the global batch; every rank then applies the same optimizer step and stays
/// identical to the others. BatchNorm normalizes with the statistics of the rank's own part (as
/// PyTorch's DistributedDataParallel without SyncBatchNorm does). Rank `r` draws its
/// augmentation at epoch `e` from a generator seeded by `(seed, r, e)`, so a run is
/// reproducible for a given K, and a run resumed from a checkpoint with the same K continues bit
/// for bit. Validation is split over the ranks the same way and its sums reduced. With K = 1
/// nothing is reduced and the loop runs exactly as a single process.
public struct TrainingLoop: Sendable {
  public let config: TrainingConfig
  /// The ranks training together (`SingleProcess()` by default).
  public let collective: any Collective
  /// The graph under training; its initializers hold the current parameters and statistics.
  public internal(set) var trainer: Trainer
  public internal(set) var optimizer: TrainingOptimizer
  /// Epochs completed and optimizer steps taken.
  public private(set) var epoch = 0
  public private(set) var step = 0
  public let shuffler: EpochShuffler
  /// The augmentation (nil when off, or when the data is not a single rank-4 float input) and
  /// the generator it draws from.
  public let augmentation: ImageAugmentation?
  public private(set) var augmentationGenerator: SplitMix64
  /// Knowledge distillation from this teacher (`DistillationLoss`), when set. Not part of a
  /// checkpoint: a resumed run must set the same teacher again.
  public var teacher: Teacher?
  /// One result per completed epoch.
  public private(set) var history: [EpochResult] = []
  public let schedule: LearningRateSchedule
  /// The graph output trained as [N, classes] logits, and the number of classes.
  public let output: String
  public let classes: Int
  /// Where the training data came from (its spec), for checkpoints and messages.
  public let dataSource: String

  private let data: Dataset
  /// `data`'s inputs in memory (training gathers rows at random), parallel to `data.inputs`.
  /// The inputs' columns: rows in memory stay there, rows in files (arrays, images) are read
  /// for each batch, so a training set larger than memory streams.
  private let inputColumns: [DataColumn]
  private let labels: [Int]
  /// The graph input each data set input feeds, parallel to `data.inputs`.
  private let targets: [String]

  /// Starts a run on `graph` (usually simplified; BatchNormalization nodes stay and train).
  /// Throws for a bad config, data without labels or not fitting the graph's inputs, a first
  /// output that is not [N, classes] logits, or labels outside `0..<classes`.
  ///
  /// With a `collective` of several ranks, every rank must call this with the same config and
  /// the same data; rank 0's initializers are broadcast to the others (the call is collective).
  public init(graph: Graph, training data: Dataset, config: TrainingConfig, collective: any Collective = SingleProcess()) throws {
    try config.validate()
    var graph = graph
    try collective.broadcastInitializers(of: &graph, root: 0)
    let trainer = try Trainer(graph)
    let noDecay = Set(trainer.parameterNames.filter { trainer.graph.initializers[$0]!.rank <= 1 })
    try self.init(
      trainer: trainer, data: data, config: config, optimizer: config.makeOptimizer(noWeightDecay: noDecay),
      augmentationGenerator: SplitMix64.stream(0x6175_6775, of: config.seed), collective: collective)
  }

  init(
    trainer: Trainer, data: Dataset, config: TrainingConfig, optimizer: TrainingOptimizer, augmentationGenerator: SplitMix64,
    collective: any Collective
  ) throws {
    guard let labelTensor = data.labels else {
      throw LowbitError.invalidInput("training data \(data.source) has no labels; training needs class labels")
    }
    try Self.checkSameCount(data.count, of: "training samples", across: collective)
    let graph = trainer.graph
    guard let output = graph.outputs.first?.name else { throw LowbitError.invalidModel("the model has no outputs") }
    // Bind the data to the graph inputs once (this throws the data set's own messages).
    let probe = try data.feeds(for: graph, batch: 0..<min(2, data.count))
    self.targets = data.inputs.map { input in input.name ?? graph.inputs[0].name }
    let logits = try trainer.forward(probe, mode: .inference).value(output)
    guard let logits, logits.rank == 2, logits.dtype.isFloatingPoint, logits.shape[1] > 0 else {
      throw LowbitError.invalidModel(
        "output '\(output)' is \(logits?.description ?? "missing"); training needs float [N, classes] logits as the first output")
    }
    let labels = labelTensor.asInts().map { Int($0) }
    if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= logits.shape[1] }) {
      throw LowbitError.invalidInput(
        "training data \(data.source): label \(labels[bad]) of sample \(bad) is outside 0..<\(logits.shape[1]) (the model's classes)")
    }
    self.config = config
    self.collective = collective
    self.trainer = trainer
    self.optimizer = optimizer
    self.data = data
    self.inputColumns = data.inputs.map(\.column)
    self.labels = labels
    self.output = output
    self.classes = logits.shape[1]
    self.dataSource = data.source
    self.shuffler = EpochShuffler(count: data.count, seed: config.seed)
    self.augmentationGenerator = augmentationGenerator
    if config.augment, data.inputs.count == 1, data.inputs[0].column.rank == 4, data.inputs[0].column.dtype.isFloatingPoint {
      let shape = data.inputs[0].column.shape
      self.augmentation = TrainingConfig.defaultAugmentation(height: shape[2], width: shape[3])
    } else {
      self.augmentation = nil
    }
    self.schedule = config.learningRateSchedule(stepsPerEpoch: (data.count + config.batchSize - 1) / config.batchSize)
  }

  /// Optimizer steps per epoch: the batches, the last one possibly smaller.
  public var stepsPerEpoch: Int { (data.count + config.batchSize - 1) / config.batchSize }
  /// Whether every configured epoch has run.
  public var isFinished: Bool { epoch >= config.epochs }
  /// The number of training samples.
  public var sampleCount: Int { data.count }

  /// Trains one epoch; `progress` gets the samples done so far after each batch. Appends the
  /// result (without validation) to `history` and returns it.
  @discardableResult
  public mutating func trainEpoch(progress: ((Int) -> Void)? = nil) throws -> EpochResult {
    precondition(!isFinished, "all \(config.epochs) epochs have run")
    let start = Date()
    var lossSum = 0.0, correct = 0, done = 0
    var rate: Float = 0
    let distributed = collective.size > 1
    if distributed {
      augmentationGenerator = Self.augmentationGenerator(seed: config.seed, rank: collective.rank, epoch: epoch)
    }
    for indices in shuffler.batches(epoch: epoch, batchSize: config.batchSize) {
      let local = distributed ? Array(indices[collective.share(of: indices.count)]) : indices
      var feeds: [String: Tensor] = [:]
      for (input, target) in zip(inputColumns, targets) where !local.isEmpty {
        var batch = try input.rows(at: local)
        if let augmentation { batch = try augmentation.apply(to: batch, using: &augmentationGenerator) }
        feeds[target] = batch
      }
      rate = schedule.rate(atStep: step)
      let result =
        distributed
        ? try distributedStep(feeds: feeds, labels: local.map { labels[$0] }, batchSize: indices.count, learningRate: rate)
        : try trainer.step(
          feeds: feeds, labels: indices.map { labels[$0] }, output: output, teacher: teacher, optimizer: &optimizer,
          learningRate: rate)
      guard result.loss.isFinite else {
        throw LowbitError.invalidInput(
          "the training loss became \(result.loss) at epoch \(epoch + 1), step \(step + 1) (learning rate \(rate)); try a smaller --lr")
      }
      step += 1
      lossSum += Double(result.loss) * Double(indices.count)
      correct += result.correct
      done += indices.count
      progress?(done)
    }
    epoch += 1
    let seconds = Date().timeIntervalSince(start)
    let result = EpochResult(
      epoch: epoch, loss: lossSum / Double(max(done, 1)), trainTop1: 100 * Double(correct) / Double(max(done, 1)),
      evalLoss: nil, evalTop1: nil, learningRate: Double(rate), seconds: seconds,
      samplesPerSecond: Double(done) / max(seconds, 1e-9))
    history.append(result)
    return result
  }

  /// Mean softmax cross-entropy and top-1 (percent) of the current graph on `data` (which must
  /// have labels), BatchNorm in inference mode; `progress` gets the samples done.
  /// With several ranks each evaluates its contiguous share of `data` (`Collective.share(of:)`)
  /// and the sums are reduced, so every rank returns the numbers for all of `data` (the call is
  /// collective); `progress` then estimates the samples done by all ranks.
  public func evaluate(_ data: Dataset, batchSize: Int, progress: ((Int) -> Void)? = nil) throws -> (loss: Double, top1: Double) {
    guard let labelTensor = data.labels else {
      throw LowbitError.invalidInput("evaluation data \(data.source) has no labels; validation needs class labels")
    }
    // Graphs with training-only ops (FakeQuantize) run on the trainer in inference mode.
    let trainingOps = trainer.graph.nodes.contains { !$0.domain.isEmpty && $0.domain != "ai.onnx" }
    let interpreter = trainingOps ? nil : try Interpreter(trainer.graph)
    var lossSum = 0.0, correct = 0
    let labels = labelTensor.asInts().map { Int($0) }
    let part = collective.share(of: data.count)
    for start in stride(from: part.lowerBound, to: part.upperBound, by: batchSize) {
      let range = start..<min(start + batchSize, part.upperBound)
      let feeds = try data.feeds(for: trainer.graph, batch: range)
      let logits = try interpreter.map { try $0.run(feeds)[output] } ?? trainer.forward(feeds, mode: .inference).value(output)
      guard let logits else { throw LowbitError.invalidModel("output '\(output)' was not computed") }
      let batchLabels = Array(labels[range])
      if let bad = batchLabels.first(where: { $0 < 0 || $0 >= classes }) {
        throw LowbitError.invalidInput("evaluation data \(data.source): label \(bad) is outside 0..<\(classes) (the model's classes)")
      }
      let loss = try SoftmaxCrossEntropy(logits: logits, labels: batchLabels)
      lossSum += Double(loss.value) * Double(range.count)
      correct += loss.correct
      progress?(min(data.count, (range.upperBound - part.lowerBound) * collective.size))
    }
    if collective.size > 1 {
      var sums = [lossSum, Double(correct)]
      try collective.allreduceSum(&sums)
      lossSum = sums[0]
      correct = Int(sums[1])
    }
    return (lossSum / Double(data.count), 100 * Double(correct) / Double(data.count))
  }

  /// Sets the counters a checkpoint recorded (`init(resuming:graph:training:)`).
  mutating func restoreProgress(epoch: Int, step: Int, history: [EpochResult]) {
    self.epoch = epoch
    self.step = step
    self.history = history
  }

  /// Records validation results for the last completed epoch.
  public mutating func recordValidation(loss: Double, top1: Double) {
    guard !history.isEmpty else { return }
    history[history.count - 1].evalLoss = loss
    history[history.count - 1].evalTop1 = top1
  }

  /// Runs the remaining epochs: each trains (`batchProgress(epoch, samples done)`), validates on
  /// `validation` when given (`validationProgress`), then calls `onEpoch` with the loop (e.g. to
  /// write a checkpoint) and the epoch's result.
  public mutating func run(
    validation: Dataset? = nil, validationBatchSize: Int? = nil,
    batchProgress: ((_ epoch: Int, _ done: Int) -> Void)? = nil,
    validationProgress: ((_ done: Int) -> Void)? = nil,
    onEpoch: ((TrainingLoop, EpochResult) throws -> Void)? = nil
  ) throws {
    while !isFinished {
      let current = epoch + 1
      try trainEpoch { batchProgress?(current, $0) }
      if let validation {
        let v = try evaluate(validation, batchSize: validationBatchSize ?? config.batchSize, progress: validationProgress)
        recordValidation(loss: v.loss, top1: v.top1)
      }
      try onEpoch?(self, history[history.count - 1])
    }
  }
}

