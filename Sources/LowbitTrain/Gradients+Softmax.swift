import Foundation
import LowbitCore

/// Gradient rules of Softmax, LogSoftmax and LayerNormalization: the normalizations inside
/// attention and transformer blocks.
extension GradientRules {
  static let softmaxRules: [String: GradientRule] = [
    "Softmax": GradientRule(inputs: [0]) { try softmax($0, log: false) },
    "LogSoftmax": GradientRule(inputs: [0]) { try softmax($0, log: true) },
    "LayerNormalization": GradientRule(inputs: [0, 1, 2], layerNormalization),
  ]

  /// Softmax `y = exp(x) / sum exp(x)`: `dx_j = y_j (dy_j - sum_k dy_k y_k)` per lane.
  /// LogSoftmax `y = x - log sum exp(x)`: `dx_j = dy_j - exp(y_j) sum_k dy_k`.
  static func softmax(_ ctx: BackwardContext, log isLog: Bool) throws -> [Tensor?] {
    let x = try ctx.input(0)
    let (outer, dim, inner) = try Ops.softmaxLanes(ctx.forward, shape: x.shape)
    let y = ctx.outputs[0].floats, g = ctx.outputGradient().floats
    var dx = [Float](repeating: 0, count: y.count)
    for o in 0..<outer {
      for i in 0..<inner {
        let base = o * dim * inner + i
        var dot: Double = 0
        for j in 0..<dim {
          let k = base + j * inner
          dot += isLog ? Double(g[k]) : Double(g[k]) * Double(y[k])
        }
        let d = Float(dot)
        for j in 0..<dim {
          let k = base + j * inner
          dx[k] = isLog ? g[k] - expf(y[k]) * d : y[k] * (g[k] - d)
        }
      }
    }
    return [Tensor(shape: x.shape, floats: dx)]
  }

  /// LayerNormalization `y = xhat * Scale + B` with `xhat = (x - mean) * r`, `r = 1/sqrt(var + eps)`
  /// over the dims from `axis` (n elements per row): with `gs = dy * Scale`,
  /// `dx = r (gs - mean(gs) - xhat mean(gs xhat))`, `dScale = sum_rows dy xhat`,
  /// `dB = sum_rows dy` (each reduced to the parameter's own broadcast shape).
  static func layerNormalization(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0)
    let axis = try ctx.forward.axis(try ctx.forward.int("axis", default: -1), rank: x.rank)
    let epsilon = Double(try ctx.forward.float("epsilon", default: 1e-5))
    let normShape = Array(x.shape[axis...])
    let n = normShape.reduce(1, *), rows = x.shape[..<axis].reduce(1, *)
    let scale = ctx.forward.optionalInput(1).map { TensorArithmetic.broadcast($0, to: normShape) } ?? [Float](repeating: 1, count: n)
    let xs = x.floats, g = ctx.outputGradient().floats
    var dx = [Float](repeating: 0, count: xs.count)
    var dScale = [Double](repeating: 0, count: n), dBias = [Double](repeating: 0, count: n)
    var xhat = [Float](repeating: 0, count: n), gs = [Float](repeating: 0, count: n)
    for r in 0..<rows {
      let base = r * n
      var sum: Double = 0
      for j in 0..<n { sum += Double(xs[base + j]) }
      let mean = sum / Double(n)
      var sq: Double = 0
      for j in 0..<n { let d = Double(xs[base + j]) - mean; sq += d * d }
      let inv = Float(1 / (sq / Double(n) + epsilon).squareRoot()), m = Float(mean)
      var meanGs: Double = 0, meanGsXhat: Double = 0
      for j in 0..<n {
        xhat[j] = (xs[base + j] - m) * inv
        gs[j] = g[base + j] * scale[j]
        meanGs += Double(gs[j])
        meanGsXhat += Double(gs[j]) * Double(xhat[j])
        dScale[j] += Double(g[base + j]) * Double(xhat[j])
        dBias[j] += Double(g[base + j])
      }
      let a = Float(meanGs / Double(n)), b = Float(meanGsXhat / Double(n))
      for j in 0..<n { dx[base + j] = inv * (gs[j] - a - xhat[j] * b) }
    }
    func reduced(_ values: [Double], slot: Int) -> Tensor? {
      guard ctx.wants(slot), let p = ctx.forward.optionalInput(slot) else { return nil }
      return TensorArithmetic.unbroadcast(Tensor(shape: normShape, floats: values.map { Float($0) }), to: p.shape)
    }
    return [ctx.wants(0) ? Tensor(shape: x.shape, floats: dx) : nil, reduced(dScale, slot: 1), reduced(dBias, slot: 2)]
  }
}
