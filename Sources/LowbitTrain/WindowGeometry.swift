import LowbitCore

/// The 2-D window geometry of a Conv or pooling node, as the forward kernels read it
/// (Core's `ConvGeometry`: `out = floor((in + padBegin + padEnd - dilation * (kernel - 1) - 1)
/// / stride) + 1`, `ceil` under `ceil_mode`). A 1-D node is lifted to 2-D with a unit leading axis.
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
    var g = try ConvGeometry(ctx, input: input, kernel: kernel, ceilMode: ceilMode)
    if rank == 1 { g = g.lifted() }
    self.kernel = g.kernel
    self.strides = g.strides
    self.dilations = g.dilations
    self.padBegin = g.padBegin
    self.padEnd = g.padEnd
    self.input = g.input
    self.output = g.output
  }

  /// Input row of kernel tap `ki` for output row `oy` (may fall in the padding).
  @inline(__always) func row(_ oy: Int, _ ki: Int) -> Int { oy * strides[0] - padBegin[0] + ki * dilations[0] }
  /// Input column of kernel tap `kj` for output column `ox` (may fall in the padding).
  @inline(__always) func column(_ ox: Int, _ kj: Int) -> Int { ox * strides[1] - padBegin[1] + kj * dilations[1] }

  var inputPlane: Int { input[0] * input[1] }
  var outputPlane: Int { output[0] * output[1] }
  var taps: Int { kernel[0] * kernel[1] }
}
