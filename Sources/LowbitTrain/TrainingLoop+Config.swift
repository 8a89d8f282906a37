import LowbitCore

/// The optimizers `TrainingLoop` offers (the CLI's `--optimizer`).
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
  /// SGD with momentum (`TrainingConfig.momentum`) and weight decay.
  case sgd
  /// Adam with PyTorch's defaults (`beta1 = 0.9`, `beta2 = 0.999`, `epsilon = 1e-8`) and coupled
  /// weight decay; `momentum` is not used.
  case adam
}

/// The learning-rate schedules `TrainingLoop` offers (the CLI's `--schedule`), after the warm-up.
public enum ScheduleKind: String, Codable, Sendable, CaseIterable {
  /// Cosine decay from the base rate to 0 over the steps after the warm-up.
  case cosine
  /// The base rate divided by 10 at 50% and again at 75% of the steps after the warm-up.
  case step
  /// The base rate throughout.
  case constant
}

/// Everything that decides a training run besides the model and the data: with the same config,
/// model and data, two runs (and a run interrupted and resumed) give the same bits.
///
/// | field | default | meaning |
/// | --- | --- | --- |
/// | `epochs` | (required) | passes over the training data |
/// | `batchSize` | 128 | samples per optimizer step; the last batch of an epoch may be smaller |
/// | `learningRate` | 0.1 | the base rate of the schedule |
/// | `optimizer` | `.sgd` | see `OptimizerKind` |
/// | `momentum` | 0.9 | SGD momentum |
/// | `weightDecay` | 5e-4 | L2 penalty on parameters of rank >= 2 (conv and linear weights; not biases or BatchNorm scales and shifts) |
/// | `schedule` | `.cosine` | see `ScheduleKind`; counted in optimizer steps |
/// | `warmupEpochs` | 0 | linear warm-up from `lr / warmupSteps` to `lr` over this many epochs |
/// | `augment` | true | random crop of the zero-padded image and horizontal flip, for a single rank-4 float input |
/// | `seed` | 0 | seeds the epoch shuffles and the augmentation |
public struct TrainingConfig: Codable, Sendable, Equatable {
  public var epochs: Int
  public var batchSize = 128
  public var learningRate: Float = 0.1
  public var optimizer = OptimizerKind.sgd
  public var momentum: Float = 0.9
  public var weightDecay: Float = 5e-4
  public var schedule = ScheduleKind.cosine
  public var warmupEpochs = 0
  public var augment = true
  public var seed: UInt64 = 0

  public init(epochs: Int) { self.epochs = epochs }

  enum CodingKeys: String, CodingKey {
    case epochs, optimizer, momentum, schedule, augment, seed
    case batchSize = "batch_size", learningRate = "learning_rate", weightDecay = "weight_decay"
    case warmupEpochs = "warmup_epochs"
  }

  /// Throws `LowbitError.invalidArgument` naming the first field out of range.
  public func validate() throws {
    guard epochs > 0 else { throw LowbitError.invalidArgument("epochs must be positive, got \(epochs)") }
    guard batchSize > 0 else { throw LowbitError.invalidArgument("batch size must be positive, got \(batchSize)") }
    guard learningRate > 0, learningRate.isFinite else {
      throw LowbitError.invalidArgument("learning rate must be a positive number, got \(learningRate)")
    }
    guard momentum >= 0, momentum < 1 else { throw LowbitError.invalidArgument("momentum must be in [0, 1), got \(momentum)") }
    guard weightDecay >= 0, weightDecay.isFinite else {
      throw LowbitError.invalidArgument("weight decay must be >= 0, got \(weightDecay)")
    }
    guard warmupEpochs >= 0, warmupEpochs < epochs else {
      throw LowbitError.invalidArgument("warm-up epochs must be in 0..<\(epochs) (the epochs), got \(warmupEpochs)")
    }
  }

  /// The schedule for `stepsPerEpoch` optimizer steps per epoch (see `ScheduleKind`).
  public func learningRateSchedule(stepsPerEpoch: Int) -> LearningRateSchedule {
    let warmup = warmupEpochs * stepsPerEpoch
    let after = max(epochs * stepsPerEpoch - warmup, 1)
    let decay: LearningRateSchedule.Decay
    switch schedule {
    case .cosine: decay = .cosine(steps: after, minimum: 0)
    case .step: decay = .multiStep(milestones: [after / 2, after * 3 / 4], factor: 0.1)
    case .constant: decay = .constant
    }
    return LearningRateSchedule(base: learningRate, decay: decay, warmupSteps: warmup)
  }

  /// A fresh optimizer of the configured kind; `noWeightDecay` names the parameters without decay.
  public func makeOptimizer(noWeightDecay: Set<String>) -> TrainingOptimizer {
    switch optimizer {
    case .sgd: return .sgd(SGD(momentum: momentum, weightDecay: weightDecay, noWeightDecay: noWeightDecay))
    case .adam: return .adam(Adam(weightDecay: weightDecay, noWeightDecay: noWeightDecay))
    }
  }

  /// The augmentation for images of `height` x `width`: zero padding 4 for images of at least
  /// 32 pixels a side, 2 from 8 pixels, 1 below; horizontal flip on.
  public static func defaultAugmentation(height: Int, width: Int) -> ImageAugmentation {
    let side = min(height, width)
    return ImageAugmentation(padding: side >= 32 ? 4 : side >= 8 ? 2 : 1, horizontalFlip: true)
  }
}

/// One of the optimizers of `OptimizerKind` with its state, as a single `Codable` value.
public enum TrainingOptimizer: Optimizer, Equatable {
  case sgd(SGD)
  case adam(Adam)

  public mutating func update(_ parameters: inout [String: Tensor], gradients: [String: Tensor], learningRate: Float) throws {
    switch self {
    case .sgd(var o):
      try o.update(&parameters, gradients: gradients, learningRate: learningRate)
      self = .sgd(o)
    case .adam(var o):
      try o.update(&parameters, gradients: gradients, learningRate: learningRate)
      self = .adam(o)
    }
  }
}
