import Foundation
import LowbitCore

/// AdaRound's weight parametrization as a training-only op (white paper eq. 22-23), so that the
/// rounding of several layers can be learned together through a `Trainer` graph (block
/// reconstruction). Domain `lowbit.train`, like `FakeQuantize`.
///
///     inputs:     V (the rounding variables), floor(w / s), s, z: four tensors of the weight's shape
///     attributes: qmin, qmax (ints, the integer grid)
///     output:     w_soft = s * (clip(floor(w / s) + h(V) + z, qmin, qmax) - z)
///
/// with the rectified sigmoid `h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`,
/// `zeta = 1.1`, `gamma = -0.1`. `h` reaches exactly 0 below `V = -2.4` and exactly 1 above
/// `V = 2.4`, so `V = -/+ hardVariable` gives the hard rounding down or up.
///
/// Gradient (V only): `d w_soft / dV = s * h'(V)` where the grid position lies strictly inside
/// `(qmin, qmax)` and h is not clipped, else 0, with
/// `h'(V) = (zeta - gamma) sigmoid(V) (1 - sigmoid(V))`.
public enum SoftRounding {
  public static let opType = "SoftRounding"
  public static let zeta: Float = 1.1
  public static let gamma: Float = -0.1
  /// A V whose `h(V)` is exactly 1 (its negative: exactly 0).
  public static let hardVariable: Float = 10

  /// A SoftRounding node.
  public static func node(
    name: String, variables: String, floor: String, scale: String, zeroPoint: String, output: String, qmin: Int, qmax: Int
  ) -> Node {
    Node(name: name, opType: opType, domain: FakeQuantize.domain, inputs: [variables, floor, scale, zeroPoint],
         outputs: [output], attributes: ["qmin": .int(qmin), "qmax": .int(qmax)])
  }

  @usableFromInline
  static func sigmoid(_ v: Float) -> Float { 1 / (1 + exp(-v)) }

  /// `h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`.
  @inlinable
  public static func rectifiedSigmoid(_ v: Float) -> Float {
    min(1, max(0, sigmoid(v) * (zeta - gamma) + gamma))
  }

  /// `dh/dV`: `(zeta - gamma) sigmoid(V) (1 - sigmoid(V))` where h is not clipped, else 0.
  @inlinable
  public static func rectifiedSigmoidDerivative(_ v: Float) -> Float {
    let s = sigmoid(v), raw = s * (zeta - gamma) + gamma
    return raw > 0 && raw < 1 ? (zeta - gamma) * s * (1 - s) : 0
  }

  /// The V with `h(V) = fraction` for a fraction in [0, 1).
  public static func initialVariable(fraction: Float) -> Float {
    let p = (fraction - gamma) / (zeta - gamma)
    return log(p / (1 - p))
  }

  struct Operands {
    let v: Tensor, floor: [Float], scale: [Float], zero: [Float]
    let qmin: Float, qmax: Float

    init(_ ctx: KernelContext) throws {
      v = try ctx.floatInput(0)
      let f = try ctx.floatInput(1), s = try ctx.floatInput(2), z = try ctx.floatInput(3)
      guard f.shape == v.shape, s.shape == v.shape, z.shape == v.shape else {
        throw ctx.error("V \(v.shape), floor \(f.shape), scale \(s.shape) and zero point \(z.shape) must have one shape")
      }
      guard case .int(let lo)? = ctx.node.attributes["qmin"], case .int(let hi)? = ctx.node.attributes["qmax"], lo < hi else {
        throw ctx.error("attributes 'qmin' < 'qmax' are required ints")
      }
      (floor, scale, zero) = (f.floats, s.floats, z.floats)
      (qmin, qmax) = (Float(lo), Float(hi))
    }
  }

  static func forward(_ ctx: KernelContext) throws -> [Tensor] {
    let o = try Operands(ctx)
    let vs = o.v.floats
    var out = [Float](repeating: 0, count: vs.count)
    for i in vs.indices {
      let q = min(max(o.floor[i] + rectifiedSigmoid(vs[i]) + o.zero[i], o.qmin), o.qmax)
      out[i] = o.scale[i] * (q - o.zero[i])
    }
    return [Tensor(shape: o.v.shape, floats: out)]
  }

  static func backward(_ ctx: BackwardContext) throws -> [Tensor?] {
    guard ctx.wants(0) else { return [nil, nil, nil, nil] }
    let o = try Operands(ctx.forward)
    let vs = o.v.floats, g = ctx.outputGradient().floats
    var dv = [Float](repeating: 0, count: vs.count)
    for i in vs.indices {
      let q = o.floor[i] + rectifiedSigmoid(vs[i]) + o.zero[i]
      if q > o.qmin && q < o.qmax { dv[i] = g[i] * o.scale[i] * rectifiedSigmoidDerivative(vs[i]) }
    }
    return [Tensor(shape: o.v.shape, floats: dv), nil, nil, nil]
  }
}

extension GradientRules {
  static let softRoundingRules: [String: GradientRule] = [
    SoftRounding.opType: GradientRule(inputs: [0], SoftRounding.backward)
  ]
}
