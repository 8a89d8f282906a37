/// Spatial geometry shared by convolution and pooling: kernel, strides, dilations and the
/// resolved begin/end padding per spatial axis, with the output size
/// `out = floor((in + padBegin + padEnd - dilation * (kernel - 1) - 1) / stride) + 1`
/// (`ceil` instead of `floor` under `ceil_mode`).
public struct ConvGeometry: Sendable {
  public var kernel: [Int]
  public var strides: [Int]
  public var dilations: [Int]
  public var padBegin: [Int]
  public var padEnd: [Int]
  public var input: [Int]
  public var output: [Int]

  /// Reads and checks `strides`, `dilations`, `pads`, `auto_pad` (and `ceil_mode` for pools).
  public init(_ ctx: KernelContext, input: [Int], kernel: [Int], ceilMode: Bool = false) throws {
    let rank = input.count
    guard kernel.count == rank, kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else {
      throw ctx.error("kernel shape \(kernel) does not fit \(rank) spatial dims")
    }
    let strides = try ctx.ints("strides") ?? [Int](repeating: 1, count: rank)
    let dilations = try ctx.ints("dilations") ?? [Int](repeating: 1, count: rank)
    guard strides.count == rank, strides.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else {
      throw ctx.error("strides \(strides) must be \(rank) positive numbers")
    }
    guard dilations.count == rank, dilations.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else {
      throw ctx.error("dilations \(dilations) must be \(rank) positive numbers")
    }
    let autoPad = try ctx.string("auto_pad", default: "NOTSET")
    var begin = [Int](repeating: 0, count: rank)
    var end = [Int](repeating: 0, count: rank)
    switch autoPad {
    case "NOTSET":
      if let pads = try ctx.ints("pads") {
        guard pads.count == 2 * rank, pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else {
          throw ctx.error("pads \(pads) must be \(2 * rank) non-negative numbers")
        }
        begin = Array(pads[0..<rank])
        end = Array(pads[rank...])
      }
    case "VALID": break
    case "SAME_UPPER", "SAME_LOWER":
      for i in 0..<rank {
        let out = (input[i] + strides[i] - 1) / strides[i]
        let total = max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - input[i])
        let small = total / 2
        begin[i] = autoPad == "SAME_UPPER" ? small : total - small
        end[i] = total - begin[i]
      }
    default:
      throw ctx.error("auto_pad '\(autoPad)' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    }
    var output = [Int](repeating: 0, count: rank)
    for i in 0..<rank {
      let span = input[i] + begin[i] + end[i] - dilations[i] * (kernel[i] - 1) - 1
      guard span >= 0 else {
        throw ctx.error("kernel \(kernel) (dilated) is larger than the padded input \(input)")
      }
      var out = (ceilMode ? (span + strides[i] - 1) / strides[i] : span / strides[i]) + 1
      // ceil_mode: the last window must start inside the input or its begin padding.
      if ceilMode && (out - 1) * strides[i] >= input[i] + begin[i] { out -= 1 }
      output[i] = out
    }
    self.kernel = kernel
    self.strides = strides
    self.dilations = dilations
    self.padBegin = begin
    self.padEnd = end
    self.input = input
    self.output = output
  }

  /// The taps `k` of a window of `kernel` taps, `dilation` apart, starting at `start` (which may
  /// lie in the padding) with `0 <= start + k dilation < size`.
  @inline(__always)
  public static func taps(from start: Int, kernel: Int, dilation: Int, size: Int) -> Range<Int> {
    let lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation
    let hi = size - start <= 0 ? 0 : min(kernel, (size - start + dilation - 1) / dilation)
    return lo..<max(lo, hi)
  }

  /// Geometry with a leading unit axis added (1-D ops run through the 2-D kernels).
  public func lifted() -> ConvGeometry {
    var g = self
    g.kernel.insert(1, at: 0)
    g.strides.insert(1, at: 0)
    g.dilations.insert(1, at: 0)
    g.padBegin.insert(0, at: 0)
    g.padEnd.insert(0, at: 0)
    g.input.insert(1, at: 0)
    g.output.insert(1, at: 0)
    return g
  }
}

/// Product of dims that refuses results above 2^34 elements (a hostile size, not a real tensor).
func checkedElementCount(_ dims: [Int], _ ctx: KernelContext) throws -> Int {
  var total = 1
  for d in dims {
    guard d >= 0 else { throw ctx.error("negative dimension in \(dims)") }
    let (product, overflow) = total.multipliedReportingOverflow(by: d)
    guard !overflow, product <= 1 << 30 else {
      throw ctx.error("shape \(dims) is too large to allocate", .invalidInput)
    }
    total = product
  }
  return total
}
