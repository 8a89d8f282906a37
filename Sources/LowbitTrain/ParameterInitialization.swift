import Foundation
import LowbitCore

/// Fresh parameters for training from scratch: the model file supplies the architecture only.
///
/// | parameter | value |
/// | --- | --- |
/// | Conv weight `[O, I/g, k...]`, Gemm/MatMul weight | He (Kaiming) normal: `N(0, 2 / fan_in)`, fan_in = `I/g * prod(k)` for Conv, the input width for Gemm/MatMul |
/// | Conv/Gemm bias | 0 |
/// | BatchNormalization scale, shift | 1, 0; running mean 0, variance 1 |
/// | any other trainable tensor | unchanged |
///
/// The normal draws come from `SplitMix64.stream(k, of: seed)` for the k-th weight in sorted
/// name order (Box-Muller), so a seed gives the same model on every machine.
public enum ParameterInitialization {
  public static func heNormal(_ graph: Graph, seed: UInt64) throws -> Graph {
    let trainer = try Trainer(graph)
    var g = trainer.graph
    var weights: [String: Int] = [:]  // name -> fan_in
    var zeros = Set<String>(), ones = Set<String>()
    for node in g.nodes {
      switch node.opType {
      case "Conv":
        if node.inputs.count > 1, let w = g.initializers[node.inputs[1]], w.rank >= 3 {
          weights[node.inputs[1]] = w.shape.dropFirst().reduce(1, *)
        }
        if node.inputs.count > 2 { zeros.insert(node.inputs[2]) }
      case "Gemm":
        if node.inputs.count > 1, let w = g.initializers[node.inputs[1]], w.rank == 2 {
          let transB: Bool
          if case .int(let t)? = node.attributes["transB"] { transB = t != 0 } else { transB = false }
          weights[node.inputs[1]] = transB ? w.shape[1] : w.shape[0]
        }
        if node.inputs.count > 2 { zeros.insert(node.inputs[2]) }
      case "MatMul":
        if node.inputs.count > 1, let w = g.initializers[node.inputs[1]], w.rank == 2 { weights[node.inputs[1]] = w.shape[0] }
      case "BatchNormalization" where node.inputs.count == 5:
        ones.formUnion([node.inputs[1], node.inputs[4]])
        zeros.formUnion([node.inputs[2], node.inputs[3]])
      default: break
      }
    }
    let trainable = Set(trainer.parameterNames + trainer.bufferNames)
    for (k, name) in weights.keys.sorted().enumerated() where trainable.contains(name) {
      let w = g.initializers[name]!, fanIn = max(weights[name]!, 1)
      var generator = SplitMix64.stream(UInt64(k), of: seed)
      let std = (2 / Double(fanIn)).squareRoot()
      var values = [Float](repeating: 0, count: w.count)
      var i = 0
      while i < values.count {
        // Box-Muller: two independent standard normals from two uniforms in (0, 1].
        let u1 = 1 - Double(generator.next() >> 11) * 0x1p-53, u2 = Double(generator.next() >> 11) * 0x1p-53
        let r = (-2 * log(u1)).squareRoot()
        values[i] = Float(std * r * cos(2 * .pi * u2))
        if i + 1 < values.count { values[i + 1] = Float(std * r * sin(2 * .pi * u2)) }
        i += 2
      }
      g.initializers[name] = Tensor(shape: w.shape, floats: values)
    }
    for name in zeros where trainable.contains(name) && weights[name] == nil {
      let t = g.initializers[name]!
      g.initializers[name] = Tensor(shape: t.shape, repeating: 0)
    }
    for name in ones where trainable.contains(name) {
      let t = g.initializers[name]!
      g.initializers[name] = Tensor(shape: t.shape, repeating: 1)
    }
    return g
  }
}
