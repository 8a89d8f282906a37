import LowbitCore

extension Trainer {
  /// What one training step measured.
  public struct StepResult: Sendable {
    /// Mean softmax cross-entropy of the batch before the update.
    public var loss: Float
    /// Rows of the batch whose top logit was the label.
    public var correct: Int
  }

  /// One step of supervised classification: a training-mode forward pass on `feeds`, softmax
  /// cross-entropy of `output` (default: the first graph output, [N, C] logits) against
  /// `labels`, the backward pass, the running-statistics update, one optimizer step and the
  /// projection of quantizer parameters (`projectParameters`: scales stay positive).
  public mutating func step<O: Optimizer>(
    feeds: [String: Tensor], labels: [Int], output: String? = nil, optimizer: inout O, learningRate: Float
  ) throws -> StepResult {
    guard let name = output ?? graph.outputs.first?.name else {
      throw LowbitError.invalidArgument("the graph has no output to train")
    }
    let tape = try forward(feeds, mode: .training)
    guard let logits = tape.value(name) else { throw LowbitError.invalidArgument("no value '\(name)'") }
    let loss = try SoftmaxCrossEntropy(logits: logits, labels: labels)
    let gradients = try backward(tape, outputGradients: [name: loss.gradient])
    updateStatistics(from: tape)
    var current = parameters
    try optimizer.update(&current, gradients: gradients, learningRate: learningRate)
    parameters = current
    projectParameters()
    return StepResult(loss: loss.value, correct: loss.correct)
  }
}
