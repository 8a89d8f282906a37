#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
import LowbitCore

/// Knowledge distillation (Hinton et al. 2015): the loss mixes the label cross-entropy with the
/// teacher's softened predictions, for logits `z` [N, C] of the student and `t` of the teacher,
/// weight `a` in [0, 1] and temperature `T > 0`:
///
///     L = (1 - a) CE(z, y) + a T^2 (1/N) sum_n KL(softmax(t_n / T) || softmax(z_n / T))
///
/// with gradient `dL/dz = (1 - a) (softmax(z) - onehot(y)) / N + a T (softmax(z/T) - softmax(t/T)) / N`.
/// In QAT the teacher is the float model and the student its quantized copy, so the quantized
/// network learns the float network's function rather than only its labels.
public struct DistillationLoss: Sendable {
  /// The mean loss, its gradient with respect to the student logits and the label top-1 count.
  public let value: Float
  public let gradient: Tensor
  public let correct: Int

  public init(logits: Tensor, labels: [Int], teacher: Tensor, weight a: Float, temperature: Float) throws {
    guard teacher.shape == logits.shape else {
      throw LowbitError.invalidInput("teacher logits \(teacher.shape) differ from the student's \(logits.shape)")
    }
    guard (0...1).contains(a), temperature > 0, temperature.isFinite else {
      throw LowbitError.invalidArgument("distillation needs a weight in [0, 1] and a positive temperature, got \(a) and \(temperature)")
    }
    let hard = try SoftmaxCrossEntropy(logits: logits, labels: labels)
    let n = logits.shape[0], c = logits.shape[1], T = Double(temperature)
    let z = logits.floats, t = teacher.floats
    var grad = hard.gradient.floats.map { Float(1 - Double(a)) * $0 }
    var kl = 0.0
    for row in 0..<n {
      let base = row * c
      let ps = Self.softmax(z[base..<(base + c)], temperature: T), pt = Self.softmax(t[base..<(base + c)], temperature: T)
      for j in 0..<c {
        if pt[j] > 0 { kl += pt[j] * (log(pt[j]) - log(max(ps[j], .leastNormalMagnitude))) }
        grad[base + j] += Float(Double(a) * T * (ps[j] - pt[j]) / Double(n))
      }
    }
    value = Float((1 - Double(a)) * Double(hard.value) + Double(a) * T * T * kl / Double(max(n, 1)))
    gradient = Tensor(shape: logits.shape, floats: grad)
    correct = hard.correct
  }

  /// `softmax(v / T)` in Double, max-shifted.
  static func softmax(_ v: ArraySlice<Float>, temperature T: Double) -> [Double] {
    let m = Double(v.max() ?? 0)
    let e = v.map { exp((Double($0) - m) / T) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
  }
}

/// The teacher of a distilled training run: its graph (run by the interpreter, inference mode),
/// the weight of its term and the temperature.
public struct Teacher: Sendable {
  public let interpreter: Interpreter
  public let output: String
  public let weight: Float
  public let temperature: Float

  public init(_ graph: Graph, weight: Float, temperature: Float) throws {
    guard (0...1).contains(weight), temperature > 0, temperature.isFinite else {
      throw LowbitError.invalidArgument(
        "distillation needs a weight in [0, 1] and a positive temperature, got \(weight) and \(temperature)")
    }
    guard let output = graph.outputs.first?.name else { throw LowbitError.invalidModel("the teacher has no outputs") }
    self.interpreter = try Interpreter(graph)
    self.output = output
    self.weight = weight
    self.temperature = temperature
  }

  /// The teacher's logits for `feeds`.
  public func logits(_ feeds: [String: Tensor]) throws -> Tensor {
    guard let t = try interpreter.run(feeds)[output] else { throw LowbitError.invalidModel("the teacher computed no '\(output)'") }
    return t
  }
}
