extension Ops {
  static let quantizationKernels: [String: Kernel] = [
    "QuantizeLinear": quantizeLinear, "DequantizeLinear": dequantizeLinear,
  ]

  /// ONNX QuantizeLinear: `y = saturate(round(x / y_scale) + y_zero_point)`, round half to even,
  /// per tensor, per axis or per block (opset 21 `block_size`). The output type is the zero
  /// point's (uint8 when absent, or `output_dtype`).
  static func quantizeLinear(_ ctx: KernelContext) throws -> [Tensor] {
    let x = try ctx.floatInput(0)
    let scale = try ctx.floatInput(1)
    let zero = ctx.optionalInput(2)
    var outType = zero?.dtype ?? .uint8
    if zero == nil, let code = try? ctx.int("output_dtype", default: 0), code != 0 {
      guard let t = DType(rawValue: code) else { throw ctx.error("output_dtype \(code) is not supported", .unsupported) }
      outType = t
    }
    guard let range = outType.integerRange, outType != .int64 else {
      throw ctx.error("quantizing to \(outType) is not supported", .unsupported)
    }
    let map = try ParamMap(ctx, x: x, scale: scale, zero: zero)
    let xs = x.floats, ss = scale.floats
    let zs = zero?.asInts() ?? [Int64](repeating: 0, count: ss.count)
    // Float(Int32.max) rounds up to 2^31: clamp again in integers.
    let lo = Float(range.lowerBound), hi = Float(range.upperBound), top = Int64(range.upperBound)
    var out = [Int64](repeating: 0, count: xs.count)
    let zf = zs.map { Float($0) }
    // Safety: i < xs.count == out.count and map.index(i) < ss.count (checked by ParamMap).
    out.withUnsafeMutableBufferPointer { op in
      let o = SharedBuffer(op)
      parallelChunks(xs.count, costPerItem: 4) { range in
        if map.isUniform {
          let s = ss[0], z = zf[0]
          for i in range {
            let r = (xs[i] / s).rounded(.toNearestOrEven) + z
            o[i] = r.isNaN ? 0 : min(Int64(min(max(r, lo), hi)), top)
          }
        } else {
          for i in range {
            let p = map.index(i)
            let r = (xs[i] / ss[p]).rounded(.toNearestOrEven) + zf[p]
            o[i] = r.isNaN ? 0 : min(Int64(min(max(r, lo), hi)), top)
          }
        }
      }
    }
    return [Tensor(dtype: outType, shape: x.shape, storage: .int(out))]
  }

  /// DequantizeLinear(QuantizeLinear(x)) with the same parameters, in one pass and without the
  /// integer tensor: `y = (clamp(round(x / s) + z, lo, hi) - z) * s`, bit-identical to the pair.
  static func fakeQuantizeLinear(_ ctx: KernelContext) throws -> [Tensor] {
    let x = try ctx.floatInput(0)
    let scale = try ctx.floatInput(1)
    let zero = ctx.optionalInput(2)
    guard let range = (zero?.dtype ?? .uint8).integerRange, zero?.dtype != .int64 else {
      throw ctx.error("quantizing to \(zero?.dtype ?? .uint8) is not supported", .unsupported)
    }
    let map = try ParamMap(ctx, x: x, scale: scale, zero: zero)
    let xs = x.floats, ss = scale.floats
    let zs = (zero?.asInts() ?? [Int64](repeating: 0, count: ss.count)).map { Float($0) }
    let lo = Float(range.lowerBound), hi = Float(range.upperBound), top = Int64(range.upperBound)
    var out = [Float](repeating: 0, count: xs.count)
    if let runs = map.runs, hi - lo <= QuantizeRuns.largestGrid, zs.allSatisfy({ abs($0) <= QuantizeRuns.largestGrid }) {
      // Safety: every run lies inside 0..<xs.count and its p < ss.count (checked by ParamMap).
      xs.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
          let src = SharedBuffer(xp), dst = SharedBuffer(op)
          QuantizeRuns.forEachRun(total: xs.count, uniform: map.isUniform, dim: runs.dim, inner: runs.inner) { start, n, p in
            QuantizeRuns.fakeQuantize(
              src.pointer(at: start, count: n), dst.pointer(at: start, count: n), count: n, scale: ss[p], zero: zs[p], lo: lo, hi: hi)
          }
        }
      }
      return [Tensor(shape: x.shape, floats: out)]
    }
    // Safety: i < xs.count == out.count and map.index(i) < ss.count (checked by ParamMap).
    out.withUnsafeMutableBufferPointer { op in
      let o = SharedBuffer(op)
      parallelChunks(xs.count, costPerItem: 4) { range in
        for i in range {
          let p = map.index(i)
          let s = ss[p], z = zs[p]
          let r = (xs[i] / s).rounded(.toNearestOrEven) + z
          let q = r.isNaN ? 0 : min(Int64(min(max(r, lo), hi)), top)
          // Integer subtraction first, as DequantizeLinear does, then one multiply.
          o[i] = Float(Int32(truncatingIfNeeded: q - Int64(z))) * s
        }
      }
    }
    return [Tensor(shape: x.shape, floats: out)]
  }

  /// ONNX DequantizeLinear: `y = (x - x_zero_point) * x_scale`, per tensor, axis or block.
  static func dequantizeLinear(_ ctx: KernelContext) throws -> [Tensor] {
    let x = try ctx.input(0)
    guard x.dtype.storageClass == .int else {
      throw ctx.error("input has type \(x.dtype), expected an integer type", .unsupported)
    }
    let scale = try ctx.floatInput(1)
    let zero = ctx.optionalInput(2)
    if let z = zero, z.dtype != x.dtype { throw ctx.error("zero point type \(z.dtype) differs from input type \(x.dtype)") }
    let map = try ParamMap(ctx, x: x, scale: scale, zero: zero)
    let xs = x.ints, ss = scale.floats
    let zs = zero?.ints ?? [Int64](repeating: 0, count: ss.count)
    var out = [Float](repeating: 0, count: xs.count)
    // Safety: i < xs.count == out.count and map.index(i) < ss.count (checked by ParamMap).
    out.withUnsafeMutableBufferPointer { op in
      let o = SharedBuffer(op)
      parallelChunks(xs.count, costPerItem: 2) { range in
        for i in range {
          let p = map.index(i)
          o[i] = Float(Int32(truncatingIfNeeded: xs[i] - zs[p])) * ss[p]
        }
      }
    }
    return [Tensor(shape: x.shape, floats: out)]
  }
}

/// Maps an element index to its scale/zero-point index for the three ONNX layouts.
private struct ParamMap {
  let index: @Sendable (Int) -> Int
  /// One scale and zero point for every element.
  var isUniform = false
  /// Per tensor or per axis: the parameters change every `inner` elements and repeat every
  /// `dim * inner` (nil for blocks).
  var runs: (dim: Int, inner: Int)?

  init(_ ctx: KernelContext, x: Tensor, scale: Tensor, zero: Tensor?) throws {
    if let z = zero, z.shape != scale.shape {
      throw ctx.error("zero point shape \(z.shape) differs from scale shape \(scale.shape)")
    }
    let blockSize = try ctx.int("block_size", default: 0)
    if scale.count == 1 && scale.rank <= 1 && blockSize == 0 {
      index = { _ in 0 }
      isUniform = true
      runs = (1, x.count)
      return
    }
    let axis = try ctx.axis(try ctx.int("axis", default: 1), rank: x.rank)
    let dim = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *)
    if blockSize <= 0 {
      guard scale.rank == 1, scale.count == dim else {
        throw ctx.error("scale has shape \(scale.shape), per-axis quantization along axis \(axis) of \(x.shape) needs [\(dim)]")
      }
      index = { ($0 / inner) % dim }
      runs = (dim, inner)
      return
    }
    var expected = x.shape
    expected[axis] = (dim + blockSize - 1) / blockSize
    guard scale.shape == expected else {
      throw ctx.error("scale has shape \(scale.shape), blocks of \(blockSize) along axis \(axis) of \(x.shape) need \(expected)")
    }
    let groups = expected[axis]
    index = { i in
      let outer = i / (inner * dim), a = (i / inner) % dim, r = i % inner
      return (outer * groups + a / blockSize) * inner + r
    }
  }
}
