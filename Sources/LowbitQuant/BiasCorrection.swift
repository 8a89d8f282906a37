import Foundation
import LowbitCore

/// Analytical (data-free) bias correction (white paper sec. 3.3, eq. 12-14).
///
/// Quantizing a weight adds the error `eps = W_hat - W`, which shifts the expected output by
/// `E[y_hat] - E[y] = eps E[x]`. Where the layer's input is `x = f(y)` for the output `y` of a
/// folded BatchNorm with shift `beta` and scale `gamma` (so `y ~ N(beta, gamma^2)` per channel)
/// and `f` a clamp to `[a, b]` (ReLU: `[0, inf)`), the expectation is the clipped normal's
///
///     E[x] = a Phi(alpha) + mu (Phi(beta') - Phi(alpha)) + sigma (phi(alpha) - phi(beta')) + b (1 - Phi(beta'))
///
/// with `mu = beta`, `sigma = |gamma|`, `alpha = (a - mu) / sigma`, `beta' = (b - mu) / sigma`, and
/// the bias becomes `b - eps E[x]` (summed over each output channel's inputs and kernel taps;
/// zero padding is ignored, as in the paper).
public enum BiasCorrection {
  /// `E[clamp(y, lower, upper)]` for `y ~ N(mean, sd^2)`.
  public static func clippedNormalMean(mean mu: Double, sd sigma: Double, lower a: Double, upper b: Double) -> Double {
    guard sigma > 0 else { return min(max(mu, a), b) }
    func pdf(_ t: Double) -> Double { t.isInfinite ? 0 : exp(-t * t / 2) / (2 * Double.pi).squareRoot() }
    func cdf(_ t: Double) -> Double { 0.5 * erfc(-t / 2.0.squareRoot()) }
    let alpha = (a - mu) / sigma, beta = (b - mu) / sigma
    let lowerMass = a.isInfinite ? 0 : a * cdf(alpha)
    let upperMass = b.isInfinite ? 0 : b * (1 - cdf(beta))
    return lowerMass + mu * (cdf(beta) - cdf(alpha)) + sigma * (pdf(alpha) - pdf(beta)) + upperMass
  }

  /// The expected input per channel of each layer whose input comes straight from a folded
  /// BatchNorm (through an optional ReLU/Clip), keyed by the layer's node name.
  static func expectedInputs(
    _ graph: Graph, layers: [WeightedLayer], statistics: [String: BatchNormStatistics]
  ) -> [String: [Double]] {
    let producer = graph.producers()
    var result: [String: [Double]] = [:]
    for layer in layers {
      guard let p = producer[layer.node.inputs[0]] else { continue }
      var node = graph.nodes[p]
      var lower = -Double.infinity, upper = Double.infinity
      if node.opType == "Relu" || node.opType == "Clip" {
        if node.opType == "Relu" {
          lower = 0
        } else {
          func bound(_ i: Int) -> Double? {
            guard i < node.inputs.count, !node.inputs[i].isEmpty, let t = graph.initializers[node.inputs[i]], t.count == 1 else { return nil }
            return Double(t.floats[0])
          }
          let clipped = node
          guard clipped.inputs.count < 2 || clipped.inputs[1].isEmpty || bound(1) != nil,
                clipped.inputs.count < 3 || clipped.inputs[2].isEmpty || bound(2) != nil else { continue }
          lower = bound(1) ?? lower
          upper = bound(2) ?? upper
        }
        guard let inner = producer[node.inputs[0]] else { continue }
        node = graph.nodes[inner]
      }
      guard let s = statistics[node.name] else { continue }
      result[layer.node.name] = zip(s.beta, s.gamma).map {
        clippedNormalMean(mean: Double($0), sd: Double(abs($1)), lower: lower, upper: upper)
      }
    }
    return result
  }

  /// Applies analytical bias correction to every weighted layer with a quantizer whose input
  /// statistics are known; returns the graph and the names of the corrected layers.
  public static func analytical(
    _ graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer],
    statistics: [String: BatchNormStatistics]
  ) -> (graph: Graph, corrected: [String]) {
    var g = LayerwiseRefinement.addingZeroBiases(graph, sites: sites, quantizers: quantizers)
    let readers = g.consumers()
    var layers: [WeightedLayer] = []
    for site in sites where site.kind == .weight && quantizers[site.name] != nil {
      guard let consumer = site.consumer, let node = g.nodes.first(where: { $0.name == consumer }),
            let layer = WeightedLayer.detect(node, in: g, readers: readers), layer.bias != nil else { continue }
      layers.append(layer)
    }
    let expected = expectedInputs(g, layers: layers, statistics: statistics)
    var corrected: [String] = []
    for layer in layers {
      guard let ex = expected[layer.node.name], let w = g.initializers[layer.weight], let q = quantizers[layer.weight],
            let biasName = layer.bias, let bias = g.initializers[biasName] else { continue }
      let channelsPerGroup: Int
      let taps: Int
      if case .conv = layer.kind {
        channelsPerGroup = w.shape[1]
        taps = w.shape[2...].reduce(1, *)
      } else {
        channelsPerGroup = layer.patchSize
        taps = 1
      }
      guard ex.count == channelsPerGroup * layer.groups else { continue }
      let error = zip(layer.matrix(Tensor(shape: w.shape, floats: q.fakeQuantize(w.floats, shape: w.shape))), layer.matrix(w)).map { $0 - $1 }
      let perGroup = layer.outputs / layer.groups
      var values = bias.floats
      for o in 0..<layer.outputs {
        let grp = o / perGroup
        var shift: Double = 0
        for c in 0..<channelsPerGroup {
          var sum: Double = 0
          for t in 0..<taps { sum += Double(error[(o * channelsPerGroup + c) * taps + t]) }
          shift += sum * ex[grp * channelsPerGroup + c]
        }
        values[o] -= Float(shift)
      }
      g.initializers[biasName] = Tensor(shape: bias.shape, floats: values)
      corrected.append(layer.node.name)
    }
    return (g, corrected)
  }
}
