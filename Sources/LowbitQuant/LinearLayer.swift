import LowbitCore

/// A MatMul or Gemm `y = x W` with a constant weight `W` `[K, N]` (a Gemm with `transB` stores
/// `W^T`) and a computed input `x` `[..., K]`: the form GPTQ rounds row by row and channel-scale
/// migration (`ChannelScaleMigration`) rescales.
struct LinearLayer: Sendable {
  var node: Node
  var weight: String
  var input: String
  var transB: Bool
  var k: Int
  var n: Int

  /// `node` as a linear layer, or why it is not one. It must be a MatMul (or a Gemm without
  /// `transA`, alpha and beta 1) reading a 2-D float initializer as its second input and a
  /// computed value as its first, the weight read by no other node.
  static func form(_ node: Node, in graph: Graph, readers: [String: [Int]]) -> Result<LinearLayer, StepFallback> {
    func refused(_ why: String) -> Result<LinearLayer, StepFallback> { .failure(StepFallback(message: why)) }
    guard ["MatMul", "Gemm"].contains(node.opType), node.domain.isEmpty, node.inputs.count >= 2,
          let w = graph.initializers[node.inputs[1]], w.rank == 2, w.dtype.isFloatingPoint,
          graph.initializers[node.inputs[0]] == nil
    else { return refused("\(node.opType) '\(node.name)' has no MatMul form") }
    let weight = node.inputs[1]
    guard readers[weight]?.count == 1 else {
      return refused("weight '\(weight)' is read by \(readers[weight]?.count ?? 0) nodes")
    }
    var transB = false
    if node.opType == "Gemm" {
      func attribute(_ name: String) -> Int { if case .int(let v)? = node.attributes[name] { return v } else { return 0 } }
      let unit = ["alpha", "beta"].allSatisfy { name in
        if case .float(let v)? = node.attributes[name] { return v == 1 } else { return true }
      }
      guard attribute("transA") == 0, unit else { return refused("Gemm '\(node.name)' transposes its input or scales") }
      transB = attribute("transB") != 0
    }
    let (k, n) = transB ? (w.shape[1], w.shape[0]) : (w.shape[0], w.shape[1])
    return .success(LinearLayer(node: node, weight: weight, input: node.inputs[0], transB: transB, k: k, n: n))
  }

  /// The weight's axes of input features `K` and outputs `N` in its stored layout.
  var axes: (input: Int, output: Int) { transB ? (1, 0) : (0, 1) }

  /// `W` as a row-major `[K, N]` matrix, whatever its stored layout.
  func matrix(_ w: Tensor) -> [Float] { transB ? transpose(w.floats, rows: n, columns: k) : w.floats }

  /// A `[K, N]` row-major matrix back in the weight's stored layout.
  func stored(_ matrix: [Float]) -> Tensor {
    Tensor(shape: transB ? [n, k] : [k, n], floats: transB ? transpose(matrix, rows: k, columns: n) : matrix)
  }
}
