import LowbitCore

/// How a forward pass treats the ops that train differently from how they infer.
public enum ExecutionMode: String, Sendable, Codable {
  /// BatchNormalization normalizes with batch statistics and moves its running statistics.
  case training
  /// BatchNormalization uses its running statistics (the ONNX inference semantics).
  case inference
}

/// The record of one forward pass: every value by name, what each node kept for its gradient
/// rule, and the running statistics the pass moved. A value; `Trainer.backward` reads it.
public struct GradientTape: Sendable {
  public let mode: ExecutionMode
  /// Every value of the pass: feeds, initializers and each node output.
  public internal(set) var values: [String: Tensor]
  /// By node index (in the trainer graph's order): what its gradient rule needs besides values.
  var saved: [Int: SavedForBackward]
  /// New values of the BatchNormalization running-statistics initializers (training mode).
  public internal(set) var runningStatistics: [String: Tensor]

  /// The value called `name`, if the pass computed or read it.
  public func value(_ name: String) -> Tensor? { values[name] }
}
