/// A Conv, Gemm or MatMul whose input and weight both come from DequantizeLinear, run the way an
/// integer runtime does: `y[c] = (sum (q_x - z_x) * q_w[c] + q_b[c]) * s_x * s_w[c]`.
///
/// The products and sums of integer-valued floats are exact while they stay below 2^24, so the
/// result is the exact integer accumulation scaled once, as in QLinearConv and MatMulInteger,
/// instead of a float sum whose rounding differs from the runtime's near rounding ties.
struct IntegerLayer: Sendable {
  /// Input scale s_x (per tensor).
  let inputScale: Float
  /// Weight scale s_w per output channel.
  let weightScales: [Float]
  /// The weight as integer-valued floats `q_w` (zero point 0).
  let weight: Tensor
  /// Integer bias `q_b` per output channel (zero when absent).
  let bias: [Float]
  /// `s_x * s_w[c]` per output channel.
  let outputScale: [Float]
  /// Axis of the output that indexes channels.
  let channelAxis: Int
  /// The input's integers fit 16 bits, so `round(x / s_x)` can take the vector loop.
  var smallGrid = false

  /// Recognizes the pattern at `node`, with constants from `graph` and DQ producers.
  static func detect(_ node: Node, in graph: Graph, producers: [String: Int]) -> IntegerLayer? {
    guard ["Conv", "Gemm", "MatMul"].contains(node.opType), node.inputs.count >= 2 else { return nil }
    func dq(_ value: String) -> Node? {
      guard let p = producers[value], graph.nodes[p].opType == "DequantizeLinear" else { return nil }
      return graph.nodes[p]
    }
    func constant(_ name: String?) -> Tensor? { name.flatMap { graph.initializers[$0] } }
    guard let dx = dq(node.inputs[0]), dx.inputs.count >= 2,
          let sx = constant(dx.inputs[1]), sx.count == 1, sx.dtype.isFloatingPoint,
          let dw = dq(node.inputs[1]), dw.inputs.count >= 2,
          let qw = constant(dw.inputs[0]), qw.dtype.storageClass == .int,
          let sw = constant(dw.inputs[1]), sw.dtype.isFloatingPoint
    else { return nil }
    // Zero points and biases are read only when their types are what DequantizeLinear allows;
    // anything else is left to DequantizeLinear's own checks when the graph runs.
    if dw.inputs.count > 2, let zw = constant(dw.inputs[2]) {
      guard zw.dtype.storageClass == .int, !zw.ints.contains(where: { $0 != 0 }) else { return nil }
    }
    if dw.attributes["block_size"] != nil { return nil }
    // Output channel axis of the weight, and of the output.
    var weightAxis: Int, outAxis: Int
    switch node.opType {
    case "Conv": (weightAxis, outAxis) = (0, 1)
    case "Gemm":
      if case .int(let t)? = node.attributes["transA"], t != 0 { return nil }
      if case .float(let a)? = node.attributes["alpha"], a != 1 { return nil }
      let transB: Bool
      if case .int(let t)? = node.attributes["transB"] { transB = t != 0 } else { transB = false }
      (weightAxis, outAxis) = (transB ? 0 : 1, 1)
    default:
      guard qw.rank == 2 else { return nil }
      (weightAxis, outAxis) = (1, -1)
    }
    let channels = qw.shape[weightAxis]
    var scales: [Float]
    if sw.count == 1 {
      scales = Array(repeating: sw.floats[0], count: channels)
    } else {
      var axis = 1
      if case .int(let a)? = dw.attributes["axis"] { axis = a < 0 ? a + qw.rank : a }
      guard axis == weightAxis, sw.count == channels else { return nil }
      scales = sw.floats
    }
    let s = sx.floats[0]
    let outputScale = scales.map { $0 * s }
    var bias = [Float](repeating: 0, count: channels)
    if node.opType != "MatMul", node.inputs.count > 2, !node.inputs[2].isEmpty {
      guard let db = dq(node.inputs[2]), let qb = constant(db.inputs.first), qb.count == channels,
            qb.dtype.storageClass == .int, let sb = constant(db.inputs.count > 1 ? db.inputs[1] : nil),
            sb.dtype.isFloatingPoint else { return nil }
      let sbs = sb.count == 1 ? Array(repeating: sb.floats[0], count: channels) : sb.floats
      // Only a bias on the s_x * s_w grid adds as an integer.
      guard sbs.count == channels, zip(sbs, outputScale).allSatisfy({ abs($0 - $1) <= 1e-6 * abs($1) }) else { return nil }
      bias = qb.ints.map { Float($0) }
    }
    let inputType = dx.inputs.count > 2 ? constant(dx.inputs[2])?.dtype : .uint8
    return IntegerLayer(
      inputScale: s, weightScales: scales, weight: Tensor(shape: qw.shape, floats: qw.ints.map { Float($0) }),
      bias: bias, outputScale: outputScale, channelAxis: outAxis,
      smallGrid: [.uint8, .int8, .uint16, .int16, .uint4, .int4].contains(inputType))
  }

  /// Runs the layer: integer input recovered as `round(x / s_x)` (exact for dequantized values,
  /// which are never NaN). With `requantization`, the result is the next QuantizeLinear's
  /// integers, computed from the int32 accumulators as an integer accelerator does.
  func run(
    _ node: Node, _ args: [Tensor?], opset: Int, activation: FusedActivation?, requantization: Requantization? = nil
  ) throws -> [Tensor] {
    guard let x = args.first ?? nil, x.dtype.isFloatingPoint else {
      throw node.error(.invalidModel, "input 0 is missing or not floating point")
    }
    let s = inputScale
    let xs = x.floats
    var rounded = [Float](repeating: 0, count: xs.count)
    if smallGrid {
      // Safety: every run lies inside 0..<xs.count.
      xs.withUnsafeBufferPointer { xp in
        rounded.withUnsafeMutableBufferPointer { op in
          let src = SharedBuffer(xp), dst = SharedBuffer(op)
          QuantizeRuns.forEachRun(total: xs.count, uniform: true, dim: 1, inner: xs.count) { start, n, _ in
            QuantizeRuns.roundQuotient(src.pointer(at: start, count: n), dst.pointer(at: start, count: n), count: n, scale: s)
          }
        }
      }
    } else {
      rounded = xs.map { ($0 / s).rounded(.toNearestOrEven) }
    }
    let xi = Tensor(shape: x.shape, floats: rounded)
    let context = KernelContext(node: node, inputs: [xi, weight], opset: opset)
    var y = try Ops.kernels[node.opType]!(context)[0]
    let axis = channelAxis < 0 ? y.rank - 1 : channelAxis
    guard axis < y.rank, y.shape[axis] == outputScale.count else {
      throw node.error(.invalidModel, "output \(y.shape) does not have \(outputScale.count) channels on axis \(axis)")
    }
    let inner = y.shape[(axis + 1)...].reduce(1, *), channels = outputScale.count
    if let r = requantization { return [r.apply(accumulators: y, bias: bias, channels: channels, inner: inner)] }
    var v = y.floats
    let rows = v.count / max(inner, 1)
    v.withUnsafeMutableBufferPointer { p in
      let values = SharedBuffer(p)
      parallelChunks(rows, costPerItem: inner) { range in
        for row in range {
          let c = row % channels, b = bias[c], sc = outputScale[c]
          let line = values.pointer(at: row * inner, count: inner)
          for j in 0..<inner { line[j] = (line[j] + b) * sc }
          activation?.apply(line, count: inner)
        }
      }
    }
    y = Tensor(shape: y.shape, floats: v)
    return [y]
  }
}

/// The QuantizeLinear after an integer layer (and its Relu or Clip), done on the accumulators:
///
///     q_y = clamp(z_y + round(acc * M_c), lower, upper),   M_c = s_x s_w[c] / s_y,
///     acc = sum (q_x - z_x) q_w[c] + q_b[c]  (int32, saturated)
///
/// with `M_c` a `FixedPointMultiplier` and the activation's bounds moved onto the output grid
/// (`lower = max(q_min, z_y + round(a / s_y))`, likewise `upper`), as TFLite and gemmlowp do.
struct Requantization: Sendable {
  let multipliers: [FixedPointMultiplier]
  let zeroPoint: Int64
  let lower: Int64, upper: Int64
  /// The QuantizeLinear's output type.
  let dtype: DType

  init?(layer: IntegerLayer, activation: FusedActivation?, quantize q: Node, in graph: Graph) {
    func constant(_ k: Int) -> Tensor? { k < q.inputs.count ? graph.initializers[q.inputs[k]] : nil }
    guard let scale = constant(1), scale.dtype.isFloatingPoint, scale.count == 1, let sy = scale.floats.first,
          sy.isFinite, sy > 0 else { return nil }
    let zero = constant(2)
    guard zero.map({ $0.count == 1 && $0.dtype.storageClass == .int }) ?? true else { return nil }
    let type = zero?.dtype ?? .uint8
    guard let range = type.integerRange, range.upperBound <= Int64(UInt16.max) else { return nil }
    let multipliers = layer.weightScales.map { Double(layer.inputScale) * Double($0) / Double(sy) }
    // A multiplier of 2^31 or more has no int32 form (never from a sensible grid).
    guard multipliers.allSatisfy({ $0.isFinite && $0 >= 0 && $0 < Double(1 << 30) }) else { return nil }
    let z = zero?.ints.first ?? 0
    self.multipliers = multipliers.map(FixedPointMultiplier.init)
    zeroPoint = z
    func onGrid(_ bound: Float) -> Int64 { z + Int64((Double(bound) / Double(sy)).rounded(.toNearestOrAwayFromZero)) }
    var lo = range.lowerBound, hi = range.upperBound
    if let a = activation {
      if a.lower.isFinite { lo = max(lo, min(hi, onGrid(a.lower))) }
      if a.upper.isFinite { hi = min(hi, max(lo, onGrid(a.upper))) }
    }
    (lower, upper, dtype) = (lo, hi, type)
  }

  /// The integers for accumulators `y` (bias not yet added) laid out as rows of `inner` values
  /// whose channel is `row % channels`.
  func apply(accumulators y: Tensor, bias: [Float], channels: Int, inner: Int) -> Tensor {
    let v = y.floats
    var out = [Int64](repeating: 0, count: v.count)
    let rows = v.count / max(inner, 1)
    for row in 0..<rows {
      let c = row % channels, m = multipliers[c], b = Double(bias[c])
      for j in row * inner..<(row + 1) * inner {
        let sum = (Double(v[j]) + b).rounded()  // an integer while the float sums stay below 2^24
        let acc = sum.isNaN ? 0 : Int32(min(max(sum, Double(Int32.min)), Double(Int32.max)))
        out[j] = min(max(zeroPoint + Int64(m.apply(acc)), lower), upper)
      }
    }
    return Tensor(dtype: dtype, shape: y.shape, storage: .int(out))
  }
}
