extension Graph {
  /// Folds a zero constant Pad that only Convs read into those Convs' `pads` attribute
  /// (TensorFlow-style "SAME" padding exported as an explicit Pad, as EfficientNet ports do):
  /// `Conv(Pad(x, p), pads q) = Conv(x, pads p + q)`, since the padded zeros contribute nothing
  /// to any sum either way. The Conv then reads x directly, so cross-layer equalization and
  /// quantizer placement see the layer pair and no second quantizer is placed on the padded copy.
  ///
  /// Left alone: other modes or a non-zero constant, pads on the batch or channel axes, negative
  /// pads (cropping), pads that are not constant, and Convs with `auto_pad` other than NOTSET.
  public func foldingPadIntoConv() -> Graph {
    var result = self
    let readers = consumers()
    let graphOutputs = Set(outputs.map(\.name))
    var removed = Set<Int>()
    for (p, pad) in nodes.enumerated() where pad.opType == "Pad" && pad.domain.isEmpty {
      guard let out = pad.outputs.first, !graphOutputs.contains(out), let r = readers[out], !r.isEmpty,
            let spatial = spatialZeroPads(pad),
            r.allSatisfy({ Graph.acceptsPadFold(nodes[$0], input: out, spatialRank: spatial.count / 2) })
      else { continue }
      for i in r {
        var conv = result.nodes[i]
        let rank = spatial.count / 2
        var q = [Int](repeating: 0, count: 2 * rank)
        if case .ints(let v)? = conv.attributes["pads"], v.count == 2 * rank { q = v }
        conv.attributes["pads"] = .ints(zip(q, spatial).map { $0 + $1 })
        conv.inputs[0] = pad.inputs[0]
        result.nodes[i] = conv
      }
      removed.insert(p)
    }
    if removed.isEmpty { return self }
    result.nodes = result.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    return result.removingDeadNodes()
  }

  /// The pads of a zero constant Pad as a Conv's `pads` attribute (begins of the spatial axes,
  /// then their ends), or nil when it pads the batch or channel axis, crops, fills with a
  /// non-zero value or reads non-constant pads.
  func spatialZeroPads(_ pad: Node) -> [Int]? {
    if case .string(let mode)? = pad.attributes["mode"], mode != "constant" { return nil }
    var pads: [Int]
    var axes: [Int]?
    if opset >= 11 {
      guard pad.inputs.count >= 2, let t = initializers[pad.inputs[1]], !t.dtype.isFloatingPoint else { return nil }
      pads = t.asInts().map { Int($0) }
      if pad.inputs.count > 2, !pad.inputs[2].isEmpty {
        guard let v = initializers[pad.inputs[2]], v.count == 1, v.asFloats()[0] == 0 else { return nil }
      }
      if pad.inputs.count > 3, !pad.inputs[3].isEmpty {
        guard let a = initializers[pad.inputs[3]], !a.dtype.isFloatingPoint else { return nil }
        axes = a.asInts().map { Int($0) }
      }
    } else {
      guard case .ints(let v)? = pad.attributes["pads"] else { return nil }
      pads = v
      if case .float(let value)? = pad.attributes["value"], value != 0 { return nil }
    }
    guard pads.count % 2 == 0, pads.allSatisfy({ $0 >= 0 }) else { return nil }
    let n = pads.count / 2
    // Without axes the pads cover every axis: the rank is n.
    let rank = axes == nil ? n : valueInfo[pad.inputs[0]]?.shape?.count ?? inputs.first { $0.name == pad.inputs[0] }?.shape?.count
    guard let rank, rank >= 3 else { return nil }
    var begins = [Int](repeating: 0, count: rank), ends = begins
    for (i, a) in (axes ?? Array(0..<n)).enumerated() {
      let axis = a < 0 ? a + rank : a
      guard axis >= 0, axis < rank else { return nil }
      begins[axis] = pads[i]
      ends[axis] = pads[i + n]
    }
    guard begins[0] == 0, begins[1] == 0, ends[0] == 0, ends[1] == 0 else { return nil }
    return Array(begins[2...] + ends[2...])
  }

  /// True when `node` is a Conv reading `input` as its data input, with explicit padding.
  static func acceptsPadFold(_ node: Node, input: String, spatialRank: Int) -> Bool {
    guard node.opType == "Conv", node.domain.isEmpty, node.inputs.first == input,
          !node.inputs.dropFirst().contains(input) else { return false }
    if case .string(let autoPad)? = node.attributes["auto_pad"], autoPad != "NOTSET" { return false }
    if case .ints(let v)? = node.attributes["pads"], v.count != 2 * spatialRank { return false }
    return true
  }
}
