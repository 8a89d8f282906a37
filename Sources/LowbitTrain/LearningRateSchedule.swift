#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The learning rate as a function of the optimizer step `t` (0-based): an optional linear
/// warm-up over the first `warmupSteps` steps, `lr(t) = base * (t + 1) / warmupSteps`, then
/// `decay` applied to `s = t - warmupSteps`.
public struct LearningRateSchedule: Codable, Sendable, Equatable {
  /// How the rate falls after the warm-up.
  public enum Decay: Codable, Sendable, Equatable {
    /// `base`.
    case constant
    /// `base * factor^floor(s / every)`.
    case step(every: Int, factor: Float)
    /// `base * factor^(number of milestones <= s)`.
    case multiStep(milestones: [Int], factor: Float)
    /// `minimum + (base - minimum) * (1 + cos(pi * min(s, steps) / steps)) / 2`, `steps` counted
    /// after the warm-up.
    case cosine(steps: Int, minimum: Float)
  }

  public var base: Float
  public var decay: Decay
  public var warmupSteps: Int

  public init(base: Float, decay: Decay = .constant, warmupSteps: Int = 0) {
    self.base = base
    self.decay = decay
    self.warmupSteps = warmupSteps
  }

  /// The learning rate at step `t`.
  public func rate(atStep t: Int) -> Float {
    if t < warmupSteps { return base * Float(t + 1) / Float(warmupSteps) }
    let s = t - warmupSteps
    switch decay {
    case .constant:
      return base
    case .step(let every, let factor):
      return base * Float(pow(Double(factor), Double(s / max(every, 1))))
    case .multiStep(let milestones, let factor):
      return base * Float(pow(Double(factor), Double(milestones.filter { $0 <= s }.count)))
    case .cosine(let steps, let minimum):
      guard steps > 0 else { return minimum }
      let progress = Double(min(s, steps)) / Double(steps)
      return minimum + (base - minimum) * Float((1 + cos(Double.pi * progress)) / 2)
    }
  }
}
