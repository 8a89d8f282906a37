import LowbitCore

/// The 2-D window geometry of a Conv or pooling node, read from its attributes as the forward
/// kernels read it: output size per axis
/// `out = floor((in + padBegin + padEnd - dilation * (kernel - 1) - 1) / stride) + 1`
/// (`ceil` under `ceil_mode`, dropping a last window that starts in the end padding).
/// A 1-D node is lifted to 2-D with a unit leading axis.
struct WindowGeometry {
  var kernel: [Int]
  var strides: [Int]
  var dilations: [Int]
  var padBegin: [Int]
  var padEnd: [Int]
  var input: [Int]
  var output: [Int]

  init(_ ctx: KernelContext, input: [Int], kernel: [Int], ceilMode: Bool = false) throws {
    let rank = input.count
    guard rank == 1 || rank == 2, kernel.count == rank else {
      throw ctx.error("only 1-D and 2-D windows have gradients (input \(input), kernel \(kernel))", .unsupported)
    }
    let strides = try ctx.ints("strides") ?? [Int](repeating: 1, count: rank)
    let dilations = try ctx.ints("dilations") ?? [Int](repeating: 1, count: rank)
    guard strides.count == rank, dilations.count == rank else {
      throw ctx.error("strides \(strides) or dilations \(dilations) do not have \(rank) values")
    }
    var begin = [Int](repeating: 0, count: rank), end = begin
    switch try ctx.string("auto_pad", default: "NOTSET") {
    case "NOTSET":
      if let pads = try ctx.ints("pads") {
        guard pads.count == 2 * rank else { throw ctx.error("pads \(pads) must have \(2 * rank) values") }
        begin = Array(pads[0..<rank])
        end = Array(pads[rank...])
      }
    case "VALID": break
    case let mode where mode == "SAME_UPPER" || mode == "SAME_LOWER":
      for i in 0..<rank {
        let out = (input[i] + strides[i] - 1) / strides[i]
        let total = max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - input[i])
        begin[i] = mode == "SAME_UPPER" ? total / 2 : total - total / 2
        end[i] = total - begin[i]
      }
    case let mode:
      throw ctx.error("auto_pad '\(mode)' is not supported")
    }
    var output = [Int](repeating: 0, count: rank)
    for i in 0..<rank {
      let span = input[i] + begin[i] + end[i] - dilations[i] * (kernel[i] - 1) - 1
      guard span >= 0 else { throw ctx.error("kernel \(kernel) is larger than the padded input \(input)") }
      var out = (ceilMode ? (span + strides[i] - 1) / strides[i] : span / strides[i]) + 1
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
    if rank == 1 {
      self.kernel.insert(1, at: 0)
      self.strides.insert(1, at: 0)
      self.dilations.insert(1, at: 0)
      self.padBegin.insert(0, at: 0)
      self.padEnd.insert(0, at: 0)
      self.input.insert(1, at: 0)
      self.output.insert(1, at: 0)
    }
  }

  /// Input row of kernel tap `ki` for output row `oy` (may fall in the padding).
  @inline(__always) func row(_ oy: Int, _ ki: Int) -> Int { oy * strides[0] - padBegin[0] + ki * dilations[0] }
  /// Input column of kernel tap `kj` for output column `ox` (may fall in the padding).
  @inline(__always) func column(_ ox: Int, _ kj: Int) -> Int { ox * strides[1] - padBegin[1] + kj * dilations[1] }

  var inputPlane: Int { input[0] * input[1] }
  var outputPlane: Int { output[0] * output[1] }
  var taps: Int { kernel[0] * kernel[1] }
}
