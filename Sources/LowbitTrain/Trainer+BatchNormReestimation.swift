import LowbitCore

extension Trainer {
  /// BatchNorm re-estimation: replaces every BatchNormalization's running mean and variance by
  /// the average of the batch statistics over `batches` (training-mode passes of the current,
  /// e.g. quantized, network; nothing else changes). After QAT the running statistics were
  /// gathered while the weights and quantizers moved; re-estimating them on the final network
  /// matches inference to what training saw (Nagel et al. 2022, "Overcoming oscillations in
  /// quantization-aware training").
  ///
  /// Batch k (1-based) runs with BN momentum `1 - 1/k`, so after K batches
  /// `running = (1/K) sum_k batch_k` exactly (a cumulative average; the variance is the unbiased
  /// batch variance when `unbiasedRunningVariance`). Returns the number of BatchNorms updated.
  @discardableResult
  public mutating func reestimateBatchNormStatistics(_ batches: [[String: Tensor]]) throws -> Int {
    let bn = graph.nodes.indices.filter { graph.nodes[$0].opType == "BatchNormalization" && graph.nodes[$0].domain.isEmpty }
    guard !bn.isEmpty, !batches.isEmpty else { return 0 }
    let momenta = bn.map { graph.nodes[$0].attributes["momentum"] }
    defer { for (i, m) in zip(bn, momenta) { graph.nodes[i].attributes["momentum"] = m } }
    for (k, feeds) in batches.enumerated() {
      let momentum = 1 - 1 / Float(k + 1)
      for i in bn { graph.nodes[i].attributes["momentum"] = .float(momentum) }
      updateStatistics(from: try forward(feeds, mode: .training))
    }
    return bn.count
  }
}
