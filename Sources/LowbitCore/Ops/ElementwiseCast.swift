/// Cast, CastLike and Identity, and the table of all elementwise kernels.
///
/// Conversion rules of Cast (`to` any `DType`):
///
/// | from \ to | float types                   | integer types                              | bool   |
/// |-----------|-------------------------------|--------------------------------------------|--------|
/// | float     | 16-bit types round to nearest | truncate toward zero, clamp to range, NaN→0 | x != 0 |
/// | integer   | nearest float                 | wrap like a C cast (4-bit types clamp)      | x != 0 |
/// | bool      | 0 or 1                        | 0 or 1                                      | same   |
///
/// float64 values are computed as Float, so a cast to float64 keeps float32 precision (a float64
/// tensor read from a file and left alone keeps its bits: it is held packed). uint64 is computed
/// as Int64: negative values clamp to 0. 16-bit floats (float16, bfloat16) round to nearest even.
extension Ops {
  static let elementwiseKernels: [String: Kernel] = {
    var table = elementwiseBinaryKernels
    table.merge(elementwiseUnaryKernels) { first, _ in first }
    table["Cast"] = { ctx in
      let raw = try ctx.int("to", default: -1)
      guard let to = DType(rawValue: raw) else {
        throw ctx.error("cast to ONNX type \(raw) is not supported", .unsupported)
      }
      return [cast(try ctx.input(0), to: to)]
    }
    table["CastLike"] = { ctx in [cast(try ctx.input(0), to: try ctx.input(1).dtype)] }
    table["Identity"] = { ctx in [try ctx.input(0)] }
    return table
  }()

  /// `x` converted to `dtype` by the rules in the table above.
  static func cast(_ x: Tensor, to dtype: DType) -> Tensor {
    if x.dtype == dtype { return x }
    let storage: Tensor.Storage
    switch (x.storage, dtype.storageClass) {
    case (.float(let v), .float):
      switch dtype {
      case .float16: storage = .float(parallelMap(v, HalfRoundingOp()))
      case .bfloat16: storage = .float(parallelMap(v, BFloat16RoundingOp()))
      default: storage = .float(v)
      }
    case (.float(let v), .int): storage = .int(parallelMap(v, FloatToIntegerOp(range: dtype.integerRange!)))
    case (.float(let v), .bool): storage = .bool(parallelMap(v, NonZeroOp()))
    case (.int(let v), .float): storage = .float(parallelMap(v, IntegerToFloatOp(to: dtype)))
    case (.int(let v), .int): storage = .int(wrapIntegers(v, to: dtype))
    case (.int(let v), .bool): storage = .bool(parallelMap(v, NonZeroOp()))
    case (.bool(let v), .float): storage = .float(parallelMap(v, BoolToNumberOp()))
    case (.bool(let v), .int): storage = .int(parallelMap(v, BoolToNumberOp()))
    case (.bool(let v), .bool): storage = .bool(v)
    }
    return Tensor(dtype: dtype, shape: x.shape, storage: storage)
  }
}

/// Float to integer: truncate toward zero, clamp to `range`, NaN to 0.
private struct FloatToIntegerOp: UnaryElementOp {
  let range: ClosedRange<Int64>
  @inline(__always) func callAsFunction(_ f: Float) -> Int64 {
    let d = Double(f)
    if d.isNaN { return 0 }
    if d <= Double(range.lowerBound) { return range.lowerBound }
    if d >= Double(range.upperBound) { return range.upperBound }
    return Int64(d)
  }
}

private struct HalfRoundingOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { roundedToHalf(x) }
}

private struct BFloat16RoundingOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { roundedToBFloat16(x) }
}

private struct IntegerToFloatOp: UnaryElementOp {
  let to: DType
  @inline(__always) func callAsFunction(_ x: Int64) -> Float {
    switch to {
    case .float16: return roundedToHalf(Float(x))
    case .bfloat16: return roundedToBFloat16(Float(x))
    default: return Float(x)
    }
  }
}

private struct NonZeroOp<T: Numeric>: UnaryElementOp {
  @inline(__always) func callAsFunction(_ x: T) -> Bool { x != 0 }
}

private struct BoolToNumberOp<T: Numeric>: UnaryElementOp {
  @inline(__always) func callAsFunction(_ x: Bool) -> T { x ? 1 : 0 }
}
