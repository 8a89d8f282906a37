import LowbitCore

extension Trainer {
  /// What one training step measured.
  public struct StepResult: Sendable {
    /// Mean softmax cross-entropy of the batch before the update.
    public var loss: Float
    /// Rows of the batch whose top logit was the label.
    public var correct: Int
  }

  /// The first half of a step, before anything changes: the batch's loss and top-1, the mean
  /// gradient over the batch for every trainable parameter, and the BatchNormalization running
  /// statistics the training-mode pass computed. Data-parallel training combines these across
  /// ranks (`TrainingLoop`) before `apply(_:optimizer:learningRate:)`.
  public struct StepGradients: Sendable {
    public var result: StepResult
    /// `d(mean loss)/d(parameter)`, by parameter name (every name of `parameterNames`).
    public var gradients: [String: Tensor]
    /// The running statistics after this batch, by initializer name.
    public var runningStatistics: [String: Tensor]

    public init(result: StepResult, gradients: [String: Tensor], runningStatistics: [String: Tensor]) {
      self.result = result
      self.gradients = gradients
      self.runningStatistics = runningStatistics
    }
  }

  /// One step of supervised classification: a training-mode forward pass on `feeds`, softmax
  /// cross-entropy of `output` (default: the first graph output, [N, C] logits) against
  /// `labels`, the backward pass, the running-statistics update, one optimizer step and the
  /// projection of quantizer parameters (`projectParameters`: scales stay positive).
  /// The same as `gradients(feeds:labels:output:)` followed by `apply(_:optimizer:learningRate:)`.
  public mutating func step<O: Optimizer>(
    feeds: [String: Tensor], labels: [Int], output: String? = nil, teacher: Teacher? = nil, optimizer: inout O,
    learningRate: Float
  ) throws -> StepResult {
    let computed = try gradients(feeds: feeds, labels: labels, output: output, teacher: teacher)
    try apply(computed, optimizer: &optimizer, learningRate: learningRate)
    return computed.result
  }

  /// The forward and backward passes of `step` without the update: loss and top-1 of the batch,
  /// parameter gradients of the mean softmax cross-entropy, and the new running statistics.
  /// With a `teacher` the loss is `DistillationLoss` against the teacher's logits for `feeds`.
  public func gradients(
    feeds: [String: Tensor], labels: [Int], output: String? = nil, teacher: Teacher? = nil
  ) throws -> StepGradients {
    guard let name = output ?? graph.outputs.first?.name else {
      throw LowbitError.invalidArgument("the graph has no output to train")
    }
    let tape = try forward(feeds, mode: .training)
    guard let logits = tape.value(name) else { throw LowbitError.invalidArgument("no value '\(name)'") }
    let (value, gradient, correct): (Float, Tensor, Int)
    if let teacher {
      let loss = try DistillationLoss(
        logits: logits, labels: labels, teacher: try teacher.logits(feeds), weight: teacher.weight,
        temperature: teacher.temperature)
      (value, gradient, correct) = (loss.value, loss.gradient, loss.correct)
    } else {
      let loss = try SoftmaxCrossEntropy(logits: logits, labels: labels)
      (value, gradient, correct) = (loss.value, loss.gradient, loss.correct)
    }
    let gradients = try backward(tape, outputGradients: [name: gradient])
    return StepGradients(
      result: StepResult(loss: value, correct: correct), gradients: gradients,
      runningStatistics: tape.runningStatistics)
  }

  /// The update half of `step`: replaces the running statistics with `computed`'s, applies one
  /// optimizer step with its gradients, then `projectParameters()`.
  public mutating func apply<O: Optimizer>(_ computed: StepGradients, optimizer: inout O, learningRate: Float) throws {
    updateStatistics(computed.runningStatistics)
    var current = parameters
    try optimizer.update(&current, gradients: computed.gradients, learningRate: learningRate)
    parameters = current
    projectParameters()
  }
}
