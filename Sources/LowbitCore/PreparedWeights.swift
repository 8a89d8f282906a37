/// Constant weights of one node in the layouts its kernel wants, computed once when an
/// `Interpreter` is built instead of on every call.
public struct PreparedWeights: Sendable {
  /// A 3x3 Conv's filters transformed for Winograd F(2x2, 3x3): `U_p = G g G^T` for every
  /// filter `g`, laid out `[16][M][C/G]` (`ConvolutionWinograd.swift`). Used when the call runs
  /// the Winograd kernel (stride 1, no dilation, enough channels, an output of at least 2x2).
  public var winogradFilters: [Float]?

  /// What `node` (in `graph`) can use, or nil when nothing applies: a Conv whose weight is a
  /// float initializer `[M, C/G, 3, 3]` with stride 1, no dilation and at least 8 input and
  /// output channels per group. Attributes the kernel would reject prepare nothing.
  static func prepare(_ node: Node, in graph: Graph) -> PreparedWeights? {
    guard node.opType == "Conv", node.inputs.count >= 2, let w = graph.initializers[node.inputs[1]],
          w.dtype == .float32, w.rank == 4, w.shape[2] == 3, w.shape[3] == 3 else { return nil }
    let ctx = KernelContext(node: node, inputs: [], opset: graph.opset)
    let strides = (try? ctx.ints("strides")).flatMap { $0 } ?? [1, 1]
    let dilations = (try? ctx.ints("dilations")).flatMap { $0 } ?? [1, 1]
    guard let group = try? ctx.int("group", default: 1), group >= 1, w.shape[0] % group == 0,
          strides == [1, 1], dilations == [1, 1], w.shape[1] >= 8, w.shape[0] / group >= 8 else { return nil }
    let count = w.shape[0] * w.shape[1]
    let filters = w.floats.withUnsafeBufferPointer { wp in
      [Float](unsafeUninitializedCapacity: 16 * count) { u, initialized in
        // Safety: the weight holds 9 * count floats, `u` 16 * count.
        ConvJob.transformFilters(wp.baseAddress!, count: count, into: u.baseAddress!)
        initialized = 16 * count
      }
    }
    return PreparedWeights(winogradFilters: filters)
  }
}
