extension Graph {
  /// Ops whose meaning changed between opsets in ways `upgradingOpset` does not convert.
  static let unconvertedChanges: [String: Int] = [
    "Pad": 11, "Resize": 13, "Upsample": 10, "Slice": 10, "TopK": 10, "Scan": 9,
  ]

  /// The graph re-expressed for a higher default-domain opset (nodes keep their meaning):
  /// attribute-to-input moves of Clip (11), Squeeze/Unsqueeze/Split/ReduceSum (13) and the other
  /// Reduce ops (18); Softmax/LogSoftmax before 13 only along the last axis. Anything else whose
  /// meaning changed throws, naming the node.
  public func upgradingOpset(to target: Int) throws -> Graph {
    let from = opset
    guard target > from else { return self }
    var result = self
    result.opsets[""] = target
    var counter = 0
    func constant(_ values: [Int64], _ base: String) -> String {
      counter += 1
      let name = uniqueName("\(base)_opset_\(counter)", in: result)
      result.initializers[name] = Tensor(shape: [values.count], ints: values)
      return name
    }
    for (i, node) in result.nodes.enumerated() {
      var n = node
      if let changed = Graph.unconvertedChanges[node.opType], from < changed, target >= changed {
        throw node.error(.unsupported, "cannot upgrade \(node.opType) from opset \(from) to \(target)")
      }
      switch node.opType {
      case "Clip" where from < 11 && target >= 11:
        var lo: Float = -.greatestFiniteMagnitude, hi: Float = .greatestFiniteMagnitude
        if case .float(let v)? = n.attributes.removeValue(forKey: "min") { lo = v }
        if case .float(let v)? = n.attributes.removeValue(forKey: "max") { hi = v }
        counter += 1
        let loName = uniqueName("\(node.name)_min_\(counter)", in: result)
        let hiName = uniqueName("\(node.name)_max_\(counter)", in: result)
        result.initializers[loName] = Tensor(scalar: lo)
        result.initializers[hiName] = Tensor(scalar: hi)
        n.inputs = [n.inputs[0], loName, hiName]
      case "Squeeze", "Unsqueeze", "Split", "ReduceSum":
        if from < 13 && target >= 13, case .ints(let axes)? = n.attributes.removeValue(forKey: node.opType == "Split" ? "split" : "axes") {
          while n.inputs.count < 1 { n.inputs.append("") }
          n.inputs.append(constant(axes.map { Int64($0) }, node.name))
        }
      case "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare":
        if from < 18 && target >= 18, case .ints(let axes)? = n.attributes.removeValue(forKey: "axes") {
          n.inputs = [n.inputs[0], constant(axes.map { Int64($0) }, node.name)]
        }
      case "Softmax", "LogSoftmax", "Hardmax":
        if from < 13 && target >= 13 {
          var axis = 1
          if case .int(let a)? = node.attributes["axis"] { axis = a }
          guard let rank = valueInfo[node.inputs[0]]?.shape?.count, axis == rank - 1 || axis == -1 else {
            throw node.error(.unsupported, "cannot upgrade \(node.opType) before opset 13 unless it acts on the last axis")
          }
          n.attributes["axis"] = .int(-1)
        }
      default: break
      }
      result.nodes[i] = n
    }
    return result
  }
}
