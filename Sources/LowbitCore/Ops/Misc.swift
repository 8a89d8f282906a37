/// Dropout, and the table of the miscellaneous kernels (Softmax, LogSoftmax, LayerNormalization,
/// Dropout).
extension Ops {
  static let miscKernels: [String: Kernel] = {
    var table: [String: Kernel] = ["Dropout": dropout]
    table.merge(softmaxKernels) { first, _ in first }
    table.merge(layerNormKernels) { first, _ in first }
    return table
  }()
}

/// Dropout at inference: the output is the input and the optional mask is all true. Training
/// mode (input 2 true, opset >= 12) with a non-zero ratio is not supported.
private func dropout(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  if ctx.opset >= 12, let mode = ctx.optionalInput(2) {
    guard case .bool(let v) = mode.storage, v.count == 1 else {
      throw ctx.error("training_mode must be a bool scalar")
    }
    var ratio: Float = 0.5
    if let r = ctx.optionalInput(1) {
      guard r.dtype.isFloatingPoint && r.count == 1 else { throw ctx.error("ratio must be a float scalar") }
      ratio = r.floats[0]
    }
    if v[0] && ratio != 0 {
      throw ctx.error("training-mode dropout is not supported", .unsupported)
    }
  }
  var outputs = [x]
  if ctx.node.outputs.count > 1 {
    outputs.append(Tensor(shape: x.shape, bools: [Bool](repeating: true, count: x.count)))
  }
  return outputs
}
