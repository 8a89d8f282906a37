import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitReport
import LowbitTrain

/// The training options `lowbit train` and `lowbit qat` share. Each command has its own
/// defaults (`TrainingConfig` for train, `QATCommand.defaultConfig` for qat).
struct TrainingOptions: ParsableArguments {
  @Option(help: "Passes over the training data (required unless --resume).")
  var epochs: Int?

  @Option(help: "Samples per optimizer step.")
  var batchSize: Int?

  @Option(name: .customLong("lr"), help: "Base learning rate.")
  var learningRate: Float?

  @Option(help: "sgd or adam.")
  var optimizer: OptimizerKind?

  @Option(help: "SGD momentum.")
  var momentum: Float?

  @Option(help: "L2 weight decay on conv and linear weights.")
  var weightDecay: Float?

  @Option(help: "Learning-rate schedule: cosine (to 0), step (x0.1 at 50% and 75%), constant.")
  var schedule: ScheduleKind?

  @Option(help: "Epochs of linear learning-rate warm-up.")
  var warmupEpochs: Int?

  @Flag(help: "Switch off random-crop and flip augmentation (train: on by default for image data).")
  var noAugment = false

  @Flag(help: "Switch on random-crop and flip augmentation for image data (qat: off by default).")
  var augment = false

  @Option(help: "Seed for the shuffles and the augmentation (default 0).")
  var seed: UInt64?

  @Option(help: "Write a checkpoint after every epoch to DIR/epoch-NNNN.ckpt (created if missing).")
  var checkpointDir: String?

  @Option(help: "Continue the run recorded in this checkpoint.")
  var resume: String?

  /// The config: the checkpoint's on resume (options given must agree with it), else the
  /// options over `defaults`. `epochs` only matters when `defaults` has none.
  func config(resuming checkpoint: Checkpoint?, defaults: (Int) -> TrainingConfig) throws -> TrainingConfig {
    guard let checkpoint else {
      guard let epochs else { throw LowbitError.invalidArgument("--epochs is required (unless --resume)") }
      var c = defaults(epochs)
      if let v = batchSize { c.batchSize = v }
      if let v = learningRate { c.learningRate = v }
      if let v = optimizer { c.optimizer = v }
      if let v = momentum { c.momentum = v }
      if let v = weightDecay { c.weightDecay = v }
      if let v = schedule { c.schedule = v }
      if let v = warmupEpochs { c.warmupEpochs = v }
      if augment && noAugment { throw LowbitError.invalidArgument("--augment and --no-augment contradict each other") }
      if augment { c.augment = true }
      if noAugment { c.augment = false }
      if let v = seed { c.seed = v }
      try c.validate()
      return c
    }
    let c = checkpoint.config
    func agree<T: Equatable>(_ name: String, _ given: T?, _ stored: T) throws {
      if let given, given != stored {
        throw LowbitError.invalidArgument(
          "\(name) \(given) differs from the checkpoint's \(stored); leave it out to resume, or start a new run")
      }
    }
    try agree("--epochs", epochs, c.epochs)
    try agree("--batch-size", batchSize, c.batchSize)
    try agree("--lr", learningRate, c.learningRate)
    try agree("--optimizer", optimizer?.rawValue, c.optimizer.rawValue)
    try agree("--momentum", momentum, c.momentum)
    try agree("--weight-decay", weightDecay, c.weightDecay)
    try agree("--schedule", schedule?.rawValue, c.schedule.rawValue)
    try agree("--warmup-epochs", warmupEpochs, c.warmupEpochs)
    try agree("--seed", seed, c.seed)
    if noAugment && c.augment { throw LowbitError.invalidArgument("--no-augment differs from the checkpoint (augmentation on)") }
    if augment && !c.augment { throw LowbitError.invalidArgument("--augment differs from the checkpoint (augmentation off)") }
    return c
  }

  /// Creates `checkpointDir` if needed and checks a checkpoint can be written there.
  func prepareCheckpointDirectory() throws {
    guard let dir = checkpointDir else { return }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else { throw LowbitError.io("--checkpoint-dir '\(dir)' exists and is not a folder") }
    } else {
      do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      } catch {
        throw LowbitError.io("cannot create --checkpoint-dir '\(dir)': \(error.localizedDescription)")
      }
    }
    try checkWritableDestination((dir as NSString).appendingPathComponent("epoch-0001.ckpt"))
  }

  /// Writes the loop's checkpoint for `epoch` into `checkpointDir`, if one was asked for.
  func writeCheckpoint(_ loop: TrainingLoop, epoch: Int, annotations: [String: String] = [:]) throws {
    guard let dir = checkpointDir else { return }
    var checkpoint = loop.checkpoint()
    checkpoint.annotations = annotations
    try checkpoint.write(to: (dir as NSString).appendingPathComponent(String(format: "epoch-%04d.ckpt", epoch)))
  }
}

/// Runs `loop`'s remaining epochs with a progress bar per epoch and one for validation on
/// `validation` (drawn on a terminal unless `quiet`), then `onEpoch` and, unless `quiet`, the
/// epoch's line: the one epoch loop of `lowbit train` and `lowbit qat`.
func runEpochs(
  _ loop: inout TrainingLoop, validation: Dataset?, validationBatchSize: Int, quiet: Bool,
  onEpoch: @escaping (TrainingLoop, EpochResult) throws -> Void
) throws {
  let bars = !quiet && ProgressBar.terminalAttached
  let epochs = loop.config.epochs, samples = loop.sampleCount
  var bar: ProgressBar?
  var evalBar: ProgressBar?
  try loop.run(
    validation: validation, validationBatchSize: validationBatchSize,
    batchProgress: { epoch, done in
      if bar == nil { bar = ProgressBar("epoch \(epoch)/\(epochs)", total: samples, enabled: bars) }
      bar?.advance(done - (bar?.done ?? 0))
    },
    validationProgress: { done in
      bar?.finish()
      bar = nil
      if evalBar == nil { evalBar = ProgressBar("eval", total: validation?.count ?? 0, enabled: bars) }
      evalBar?.advance(done - (evalBar?.done ?? 0))
    },
    onEpoch: { loop, result in
      bar?.finish()
      evalBar?.finish()
      bar = nil
      evalBar = nil
      try onEpoch(loop, result)
      if !quiet { print(TrainCommand.line(result, epochs: epochs)) }
    })
}
