import LowbitCore

/// Simulated quantization with trainable scale and offset, for quantization-aware training
/// (white paper sec. 4.1). A training-only op: node type `FakeQuantize` in the private domain
/// `lowbit.train`, run by `Trainer` (not by the interpreter, and never written to a file).
///
///     inputs:     x, scale s, offset z (optional: absent means z = 0, a symmetric grid)
///     attributes: qmin, qmax (ints, the integer grid), axis (int, optional: per-channel along
///                 axis, s and z of shape [x.shape[axis]]; absent: per-tensor, one element each),
///                 min_scale (float, optional: the floor `Trainer.projectParameters` keeps s at),
///                 gradient_scale (float, optional, default 1: multiplies the gradients of s and z),
///                 site (string, optional: the quantizer site the node simulates)
///     output:     x_hat = s * (clip(round(x / s) + round(z), qmin, qmax) - round(z))
///
/// `round` is half to even and `x / s` is a Float division, as ONNX QuantizeLinear computes it,
/// so `x_hat` is bit for bit what QuantizeLinear -> DequantizeLinear with zero point `round(z)`
/// produces. NaN maps to 0 (the zero point), +-infinity to the grid's ends.
///
/// Gradients (eq. 37-39, straight-through estimator with LSQ's scale gradient), with
/// `u = x / s`, `r = round(u)`, `zr = round(z)` and the grid position `q = r + zr`:
///
/// | region            | d x_hat / d x | d x_hat / d s | d x_hat / d z |
/// |-------------------|---------------|---------------|---------------|
/// | qmin <= q <= qmax | 1             | r - u         | 0             |
/// | q < qmin          | 0             | qmin - zr     | -s            |
/// | q > qmax          | 0             | qmax - zr     | -s            |
///
/// They are the exact derivatives of `s * (clip(u + c + z, qmin, qmax) - z)` with the rounding
/// residual `c = r - u` held constant (and `round(z)` passed straight through): inside the grid
/// `s * (u + c) = x + s c` gives 1, `c` and 0; at a clipped end `s * (qmin - z)` gives 0,
/// `qmin - z` and `-s`. Per-channel gradients of s and z sum over all other axes.
///
/// `gradient_scale` is LSQ's gradient scaling (Esser et al. 2020, sec. 2.2): one scale collects
/// the gradients of all the elements it serves, so its step would dwarf theirs; the QAT graph
/// multiplies the gradients of s and z by `1 / sqrt(n * qmax)`, n the elements per scale (per
/// sample for activations). It is a per-parameter step size, not a different quantizer; with the
/// default of 1 the gradients are eq. 38-39 unchanged.
///
/// **Scales stay positive by projection**: after every optimizer step `Trainer.step` calls
/// `Trainer.projectParameters()`, which sets `s = max(s, min_scale)` (default 1e-8) and clamps
/// `z` into `[qmin, qmax]` (so `round(z)` is always a valid zero point). The forward pass
/// throws for a scale that is not positive and finite rather than compute a meaningless grid.
public enum FakeQuantize {
  /// The node type.
  public static let opType = "FakeQuantize"
  /// The private operator domain of lowbit's training-only ops.
  public static let domain = "lowbit.train"
  /// The smallest scale `Trainer.projectParameters` allows when a node has no `min_scale`.
  public static let defaultMinimumScale: Float = 1e-8

  /// A FakeQuantize node reading `input` with `scale` and `offset` (nil: a symmetric grid, z = 0).
  public static func node(
    name: String, input: String, scale: String, offset: String?, output: String,
    qmin: Int, qmax: Int, axis: Int? = nil, site: String? = nil, minimumScale: Float? = nil,
    gradientScale: Float? = nil
  ) -> Node {
    var attributes: [String: Attribute] = ["qmin": .int(qmin), "qmax": .int(qmax)]
    if let axis { attributes["axis"] = .int(axis) }
    if let site { attributes["site"] = .string(site) }
    if let minimumScale { attributes["min_scale"] = .float(minimumScale) }
    if let gradientScale { attributes["gradient_scale"] = .float(gradientScale) }
    return Node(
      name: name, opType: opType, domain: domain, inputs: [input, scale, offset ?? ""], outputs: [output],
      attributes: attributes)
  }

  /// Whether `node` is a FakeQuantize node.
  public static func isFakeQuantize(_ node: Node) -> Bool { node.opType == opType && node.domain == domain }

  /// Where `x` falls on the grid: below when `round(x/s) + zr < qmin`, above when `> qmax`.
  public enum Region: Sendable, Equatable { case below, inside, above }

  /// The offset a forward pass uses: `round(z)`, half to even.
  @inlinable
  public static func roundedOffset(_ z: Float) -> Float { z.rounded(.toNearestOrEven) }

  /// The region of `x` for scale `s` and rounded offset `zr`.
  @inlinable
  public static func region(_ x: Float, scale s: Float, offset zr: Float, qmin: Int, qmax: Int) -> Region {
    let q = Double((x / s).rounded(.toNearestOrEven)) + Double(zr)
    if q < Double(qmin) { return .below }
    if q > Double(qmax) { return .above }
    return .inside
  }

  /// `x_hat = s * (clip(round(x/s) + zr, qmin, qmax) - zr)` for a rounded offset `zr`
  /// (the integer subtraction first, then one multiply, as DequantizeLinear computes it).
  @inlinable
  public static func value(_ x: Float, scale s: Float, offset zr: Float, qmin: Int, qmax: Int) -> Float {
    let z = Int(zr)
    let r = (x / s).rounded(.toNearestOrEven)
    let q: Int
    if r.isFinite {
      q = Int(min(max(Double(r) + Double(z), Double(qmin)), Double(qmax)))
    } else {
      q = r.isNaN ? z : (r > 0 ? qmax : qmin)
    }
    return s * Float(q - z)
  }

  /// `value` with the grid ends as Floats, for grids within +-2^24 (where every integer and the
  /// sum `round(x/s) + zr` are exact in Float, or already far outside the grid): the same result,
  /// in a form the compiler vectorizes.
  @inlinable
  public static func value(_ x: Float, scale s: Float, offset zr: Float, lower: Float, upper: Float) -> Float {
    let q = min(max((x / s).rounded(.toNearestOrEven) + zr, lower), upper)
    return x.isNaN ? 0 : s * (q - zr)
  }

  /// Whether a grid fits `value(_:scale:offset:lower:upper:)`'s Float arithmetic.
  @inlinable
  public static func isFloatExact(qmin: Int, qmax: Int) -> Bool { qmin >= -(1 << 24) && qmax <= (1 << 24) }

  /// `d x_hat / d x`: 1 inside the grid, 0 at the clipped ends (STE, eq. 37).
  @inlinable
  public static func inputGradient(_ x: Float, scale s: Float, offset zr: Float, qmin: Int, qmax: Int) -> Float {
    region(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) == .inside ? 1 : 0
  }

  /// `d x_hat / d s`: `round(x/s) - x/s` inside, `qmin - zr` below, `qmax - zr` above (LSQ, eq. 38).
  @inlinable
  public static func scaleGradient(_ x: Float, scale s: Float, offset zr: Float, qmin: Int, qmax: Int) -> Float {
    switch region(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) {
    case .inside: return (x / s).rounded(.toNearestOrEven) - x / s
    case .below: return Float(qmin) - zr
    case .above: return Float(qmax) - zr
    }
  }

  /// `d x_hat / d z`: 0 inside, `-s` at the clipped ends (eq. 39; `round(z)` passed straight through).
  @inlinable
  public static func offsetGradient(_ x: Float, scale s: Float, offset zr: Float, qmin: Int, qmax: Int) -> Float {
    region(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) == .inside ? 0 : -s
  }

  /// The projection `Trainer.projectParameters` applies: `s = max(s, minimumScale)` (NaN too).
  @inlinable
  public static func projectedScale(_ s: Float, minimumScale: Float) -> Float {
    s >= minimumScale ? s : minimumScale
  }

  /// The projection of an offset: `z` clamped into `[qmin, qmax]` (NaN becomes the value nearest 0).
  @inlinable
  public static func projectedOffset(_ z: Float, qmin: Int, qmax: Int) -> Float {
    let v = z.isNaN ? 0 : z
    return min(max(v, Float(qmin)), Float(qmax))
  }
}

/// Forward kernels of the ops only training runs (domain `lowbit.train`: FakeQuantize,
/// BiasQuantize), beside Core's.
public enum TrainingOps {
  /// Training-only kernels by op type.
  public static let kernels: [String: Kernel] = [
    FakeQuantize.opType: FakeQuantize.forward, BiasQuantize.opType: BiasQuantize.forward,
    SoftRounding.opType: SoftRounding.forward,
  ]

  /// The forward kernel for `node`: ours for `lowbit.train`, else Core's for the node's domain.
  public static func kernel(for node: Node) -> Kernel? {
    node.domain == FakeQuantize.domain ? kernels[node.opType] : Ops.kernel(for: node)
  }
}
