import Foundation
import LowbitCore

/// An online Hadamard rotation of a linear layer's input (QuaRot, Ashkboos et al. 2024):
/// `y = x W = (x R) (R^T W)` for the block-diagonal orthogonal `R = diag(H_b, ..., H_b)`, `H_b`
/// the `b x b` Sylvester Hadamard matrix over `sqrt b` (symmetric, so `R^T = R`). The float
/// function is unchanged; the quantizers see `x R`, whose channels each mix `b` of `x`'s, so an
/// outlier channel spreads over its block and one grid fits the rest far better, and `R W`.
///
/// `R W` is folded into the weight; `x R` runs online as `Reshape [.., K / b, b] -> MatMul H_b ->
/// Reshape [.., K]`, a float op before the layer's input quantizer (`isRotation` marks it for
/// quantizer placement). ChannelScaleMigration decides per group whether it pays.
public enum HadamardRotation {
  /// The largest block: `H_64` costs a sixth of a 384-wide layer's multiply-adds per row.
  public static let maxBlock = 64
  /// Smaller blocks mix too few channels to spread an outlier.
  public static let minBlock = 16

  /// The block for `k` input features: the largest power of two up to `maxBlock` dividing `k`,
  /// nil below `minBlock`.
  public static func block(for k: Int) -> Int? {
    var b = maxBlock
    while b >= minBlock {
      if k % b == 0 { return b }
      b /= 2
    }
    return nil
  }

  /// `H_b / sqrt b`, row-major: entry (i, j) is `(-1)^popcount(i & j) / sqrt b`.
  public static func matrix(_ b: Int) -> [Float] {
    let unit = 1 / Float(b).squareRoot()
    return (0..<(b * b)).map { e in ((e / b) & (e % b)).nonzeroBitCount % 2 == 0 ? unit : -unit }
  }

  /// Applies `R` along the middle axis of `a`, laid out `[outer, k, inner]`: each block of `b`
  /// consecutive middle indices is multiplied by `H_b / sqrt b` (the fast Walsh-Hadamard
  /// butterflies, `b log b` adds). Rows of `x` `[rows, k]` are `outer = rows, inner = 1`; a weight
  /// `W` `[k, n]` becomes `R W` with `outer = 1, inner = n`.
  public static func rotate(_ a: inout [Float], k: Int, inner: Int, block b: Int) {
    precondition(k % b == 0 && b > 0 && b & (b - 1) == 0 && a.count % (k * inner) == 0)
    let outer = a.count / (k * inner), unit = 1 / Float(b).squareRoot()
    a.withUnsafeMutableBufferPointer { p in
      for o in 0..<outer {
        for start in stride(from: 0, to: k, by: b) {
          let base = (o * k + start) * inner
          var h = 1
          while h < b {
            for i in 0..<b where i & h == 0 {
              let u = base + i * inner, v = base + (i + h) * inner
              for c in 0..<inner {
                let x = p[u + c], y = p[v + c]
                p[u + c] = x + y
                p[v + c] = x - y
              }
            }
            h *= 2
          }
          for e in base..<(base + b * inner) { p[e] *= unit }
        }
      }
    }
  }

  /// Whether `node` is a rotation this transform wrote: a MatMul by a constant `b x b` matrix
  /// equal to `matrix(b)`. Quantizer placement leaves its input and constant float and ends the
  /// unit before it at its output.
  public static func isRotation(_ node: Node, in graph: Graph) -> Bool {
    guard node.opType == "MatMul", node.inputs.count == 2, graph.initializers[node.inputs[0]] == nil,
          let h = graph.initializers[node.inputs[1]], h.rank == 2, h.shape[0] == h.shape[1], h.dtype == .float32
    else { return false }
    let b = h.shape[0]
    return b >= minBlock && b & (b - 1) == 0 && h.floats == matrix(b)
  }

  /// Rotates the input of the nodes at `readers` (all reading `x`, of rank `rank`, last axis `k`)
  /// with blocks of `b`: inserts the online `x R` before the first of them and rewires them to
  /// it. The weights are the caller's to rotate. Returns the rotation MatMul's name.
  static func insert(_ g: inout Graph, x: String, rank: Int, k: Int, block b: Int, readers: Set<Int>) -> String {
    let h = g.freshName(x + "_hadamard"), split = g.freshName(x + "_blocks_shape"), merge = g.freshName(x + "_rows_shape")
    g.initializers[h] = Tensor(shape: [b, b], floats: matrix(b))
    let lead = [Int64](repeating: 0, count: rank - 1)  // 0 copies the input's dimension
    g.initializers[split] = Tensor(shape: [rank + 1], ints: lead + [Int64(k / b), Int64(b)])
    g.initializers[merge] = Tensor(shape: [rank], ints: lead + [Int64(k)])
    let blocks = g.freshName(x + "_blocks"), rotatedBlocks = g.freshName(x + "_rotated_blocks"), rotated = g.freshName(x + "_rotated")
    let name = g.freshName(x + "/hadamard")
    let nodes = [
      Node(name: g.freshName(x + "/split_blocks"), opType: "Reshape", inputs: [x, split], outputs: [blocks]),
      Node(name: name, opType: "MatMul", inputs: [blocks, h], outputs: [rotatedBlocks]),
      Node(name: g.freshName(x + "/merge_blocks"), opType: "Reshape", inputs: [rotatedBlocks, merge], outputs: [rotated]),
    ]
    for i in readers { g.nodes[i].inputs = g.nodes[i].inputs.map { $0 == x ? rotated : $0 } }
    g.nodes.insert(contentsOf: nodes, at: readers.min()!)
    return name
  }
}
