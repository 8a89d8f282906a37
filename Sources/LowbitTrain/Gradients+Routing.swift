import LowbitCore

/// Gradient rules of the ops that copy each output element from one element of `X`, or from
/// none (padding): Slice, Split, Pad, Tile, DepthToSpace and SpaceToDepth; and of Resize. Instead of restating each op's index arithmetic
/// (negative and clamped starts, steps, reflect and edge padding, ...), the rule runs the op's own
/// forward kernel on the positions of `X` — the int64 tensor `1, 2, ..., |X|` shaped like `X`, with
/// padding filled with 0 — which gives each output element `k` its source `src(k)`; then
/// `dX[src(k) - 1] += dY[k]` over every output, and padding (`src(k) = 0`) gets nothing.
extension GradientRules {
  static let routingRules: [String: GradientRule] = [
    "Slice": GradientRule(inputs: [0], routed),
    "Split": GradientRule(inputs: [0], routed),
    "Pad": GradientRule(inputs: [0], routed),
    "Tile": GradientRule(inputs: [0], routed),
    "DepthToSpace": GradientRule(inputs: [0], routed),
    "SpaceToDepth": GradientRule(inputs: [0], routed),
    "Resize": GradientRule(inputs: [0], resize),
    "Upsample": GradientRule(inputs: [0], resize),
  ]

  /// Resize and Upsample: each resized axis is a linear map with the forward pass's taps, so
  /// `dX` is `dY` through the transposed taps, axis by axis in reverse order.
  static func resize(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0)
    guard x.dtype.isFloatingPoint else { throw ctx.error("integer input has no gradient") }
    let plan = try ResizePlan(ctx.forward, shape: x.shape)
    var shape = plan.outputShape, g = ctx.outputGradient().floats
    for axis in plan.axes.reversed() {
      let n = x.shape[axis], m = plan.outputShape[axis]
      let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
      let taps = plan.geometry.taps(input: n, output: m, scale: plan.scales[axis])
      g = ResizeGeometry.applyTransposed(taps, to: g, outer: outer, input: n, inner: inner)
      shape[axis] = n
    }
    return [Tensor(shape: x.shape, floats: g)]
  }

  /// `dX[src(k) - 1] += dY[k]`, `src` from the forward kernel run on the positions of `X`.
  static func routed(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0)
    guard x.dtype.isFloatingPoint else { throw ctx.error("integer input has no gradient") }
    let sources = try sourcePositions(ctx, count: x.count, shape: x.shape)
    var dx = [Float](repeating: 0, count: x.count)
    for (k, source) in sources.enumerated() {
      guard let g = ctx.outputGradients[k] else { continue }
      let gs = g.floats, src = source.ints
      for i in src.indices where src[i] > 0 { dx[Int(src[i]) - 1] += gs[i] }
    }
    return [Tensor(shape: x.shape, floats: dx)]
  }

  /// The forward kernel's outputs for the positions `1...count` of `X` (0 where it pads).
  private static func sourcePositions(_ ctx: BackwardContext, count: Int, shape: [Int]) throws -> [Tensor] {
    guard let kernel = Ops.kernels[ctx.node.opType] else { throw ctx.error("no \(ctx.node.opType) kernel") }
    var inputs = ctx.forward.inputs
    var node = ctx.node
    inputs[0] = Tensor(shape: shape, ints: (0..<Int64(count)).map { $0 + 1 })
    if ctx.node.opType == "Pad" {
      // Padding reads 0 whatever the model pads with (a constant_value input, or before opset
      // 11 the `value` attribute); reflect, edge and wrap padding copy positions like values.
      if ctx.forward.opset >= 11 {
        if inputs.count > 2 { inputs[2] = Tensor(shape: [], ints: [0]) }
      } else {
        node.attributes["value"] = .float(0)
      }
    }
    return try kernel(KernelContext(node: node, inputs: inputs, opset: ctx.forward.opset))
  }
}
