import LowbitCore

/// Simulated int32 bias quantization, for quantization-aware training: what a QDQ file does to a
/// Conv/Gemm bias whose weight and input are quantized (the bias is stored as int32 at scale
/// `s_w * s_x`). A training-only op of domain `lowbit.train` like `FakeQuantize`.
///
///     inputs:  b [C], s_w (the weight quantizer's scale: [C] per channel, or one element),
///              s_x (the input quantizer's scale, one element)
///     output:  b_hat[c] = round(b[c] / t_c) * t_c,   t_c = s_w[c or 0] * s_x
///
/// with `round` half to even and the product `t_c` in Float, as the QDQ writer computes it, so
/// the trained graph adds the same bias the file does. Gradient: straight through for `b`
/// (`d b_hat / d b = 1`); none for the scales along this path (they learn from their own
/// quantizers; the bias rounding moves a bias by at most `t_c / 2`).
public enum BiasQuantize {
  public static let opType = "BiasQuantize"

  /// A BiasQuantize node.
  public static func node(name: String, bias: String, weightScale: String, inputScale: String, output: String) -> Node {
    Node(name: name, opType: opType, domain: FakeQuantize.domain, inputs: [bias, weightScale, inputScale], outputs: [output])
  }

  /// Whether `node` is a BiasQuantize node.
  public static func isBiasQuantize(_ node: Node) -> Bool { node.opType == opType && node.domain == FakeQuantize.domain }

  /// `round(b / t) * t`, half to even.
  @inlinable
  public static func value(_ b: Float, step t: Float) -> Float { (b / t).rounded(.toNearestOrEven) * t }

  static func forward(_ ctx: KernelContext) throws -> [Tensor] {
    let b = try ctx.floatInput(0), sw = try ctx.floatInput(1), sx = try ctx.floatInput(2)
    guard sx.count == 1 else { throw ctx.error("the input scale has \(sx.count) elements, expected 1") }
    guard sw.count == 1 || sw.count == b.count else {
      throw ctx.error("the weight scale has \(sw.count) elements, the bias \(b.count)")
    }
    let x = sx.floats[0], w = sw.floats, bs = b.floats
    let out = bs.indices.map { c in
      let t = w[w.count == 1 ? 0 : c] * x
      return t > 0 && t.isFinite ? value(bs[c], step: t) : bs[c]
    }
    return [Tensor(shape: b.shape, floats: out)]
  }

  static func backward(_ ctx: BackwardContext) throws -> [Tensor?] {
    [ctx.wants(0) ? ctx.outputGradient() : nil, nil, nil]
  }
}

extension GradientRules {
  static let biasQuantizeRules: [String: GradientRule] = [
    BiasQuantize.opType: GradientRule(inputs: [0], BiasQuantize.backward)
  ]
}
