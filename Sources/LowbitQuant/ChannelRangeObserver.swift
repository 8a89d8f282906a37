import LowbitCore

/// Range statistics of one activation per channel: a `RangeObserver` for each index along the
/// channel axis (counted from the end, as ONNX's per-axis QuantizeLinear allows, so that the
/// quantizer does not depend on the rank), for activations that take one grid per channel
/// (`QuantConfig.activationPerChannel`). Each channel's range is set by the same method as a
/// per-tensor activation's, on that channel's values alone.
///
/// Each channel's histogram has `bins` (256) bins instead of a tensor's 2048: a transformer layer
/// has hundreds of channels per quantizer, and the MSE search costs one pass over the bins per
/// candidate range. A value with a single channel keeps the 2048 (it falls back to one grid).
struct ChannelRangeObserver: Sendable {
  static let bins = 256
  let name: String
  /// The channel axis, negative.
  let axis: Int
  private(set) var channels: [RangeObserver] = []

  init(name: String, axis: Int) {
    self.name = name
    self.axis = axis
  }

  /// Adds one batch (`channelValues`).
  mutating func observe(_ t: Tensor) throws {
    let parts = try Self.channelValues(t, axis: axis, name: name)
    if channels.isEmpty {
      // One channel is one grid for the whole tensor: it gets a per-tensor observer's bins.
      let bins = parts.count == 1 ? RangeHistogram.binCount : Self.bins
      channels = (0..<parts.count).map { RangeObserver(name: "\(name)[channel \($0)]", bins: bins) }
    }
    guard channels.count == parts.count else {
      throw LowbitError.invalidInput("activation '\(name)': \(parts.count) channels on axis \(axis), \(channels.count) before")
    }
    for c in 0..<parts.count { channels[c].observe(parts[c]) }
  }

  /// The values of each channel of `t` along `axis` (negative, counted from the end): element `i`
  /// of a value of shape `[.., C, inner..]` belongs to channel `(i / inner) % C`.
  static func channelValues(_ t: Tensor, axis: Int, name: String) throws -> [[Float]] {
    guard axis < 0, axis + t.rank >= 0 else {
      throw LowbitError.invalidInput("activation '\(name)': per-channel axis \(axis) does not exist in shape \(t.shape)")
    }
    let a = axis + t.rank
    let count = t.shape[a], inner = t.shape[(a + 1)...].reduce(1, *)
    let values = t.floats, outer = values.count / max(count * inner, 1)
    var parts = [[Float]](repeating: [], count: count)
    for c in 0..<count { parts[c].reserveCapacity(outer * inner) }
    for o in 0..<outer {
      for c in 0..<count {
        let start = (o * count + c) * inner
        parts[c].append(contentsOf: values[start..<(start + inner)])
      }
    }
    return parts
  }

  /// Each channel's clipping range by `method` (`RangeObserver.range`).
  func ranges(method: RangeMethod, grid: IntegerGrid, symmetric: Bool, percentile: Double) throws -> [ClosedRange<Float>] {
    guard !channels.isEmpty else { throw LowbitError.invalidInput("activation '\(name)': no values observed") }
    // Channels are searched in parallel; each channel's search is unchanged.
    let channels = self.channels
    return try parallelIndexedMap(channels.count, costPerItem: Self.bins * 100) { c in
      Result { try channels[c].range(method: method, grid: grid, symmetric: symmetric, percentile: percentile) }
    }.map { try $0.get() }
  }
}
