import Foundation
import LowbitCore

extension AIMETEncodings {
  /// The file's JSON (keys sorted).
  public func json() throws -> Data {
    var root: [String: Any] = ["version": version.rawValue]
    let params = parameters.sorted { $0.key < $1.key }, acts = activations.sorted { $0.key < $1.key }
    switch version {
    case .v0_6_1:
      root["param_encodings"] = Dictionary(uniqueKeysWithValues: params.map { ($0.key, Self.legacy($0.value)) })
      root["activation_encodings"] = Dictionary(uniqueKeysWithValues: acts.map { ($0.key, Self.legacy($0.value)) })
    case .v1_0_0:
      root["param_encodings"] = params.map { Self.v1($0.key, $0.value) }
      root["activation_encodings"] = acts.map { Self.v1($0.key, $0.value) }
      root["excluded_layers"] = [String]()
      let weight = parameters.values.first, activation = activations.values.first
      root["quantizer_args"] = [
        "activation_bitwidth": activation?.bits ?? 8, "param_bitwidth": weight?.bits ?? 8, "dtype": "int",
        "is_symmetric": (weight?.signed ?? true) ? "True" : "False",
        "per_channel_quantization": (weight?.perChannel ?? false) ? "True" : "False",
      ] as [String: Any]
    case .v2_0_0:
      root["encodings"] = (params + acts).map { Self.v2($0.key, $0.value) }
    }
    return try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
  }

  /// The unsigned grid's offset of 0.6.1 and 1.0.0: `-(z - q_min)`.
  static func unsignedOffset(_ e: Entry, _ z: Int) -> Int { -(z + (e.signed ? 1 << (e.bits - 1) : 0)) }

  static func legacy(_ e: Entry) -> [[String: Any]] {
    let grid = IntegerGrid(bits: e.bits, signed: e.signed)
    return zip(e.scales, e.zeroPoints).map { s, z -> [String: Any] in
      let scale = Double(s)
      let low: Double = scale * Double(grid.qmin - z), high: Double = scale * Double(grid.qmax - z)
      var d: [String: Any] = ["bitwidth": e.bits, "dtype": "int", "scale": scale, "offset": unsignedOffset(e, z)]
      d["is_symmetric"] = e.signed && z == 0 ? "True" : "False"
      d["min"] = low
      d["max"] = high
      return d
    }
  }

  static func v1(_ name: String, _ e: Entry) -> [String: Any] {
    var d: [String: Any] = [
      "name": name, "dtype": "INT", "bw": e.bits, "is_sym": e.signed && e.zeroPoints.allSatisfy { $0 == 0 },
      "scale": e.scales.map(Double.init), "offset": e.zeroPoints.map { unsignedOffset(e, $0) },
      "enc_type": e.blockSize != nil ? "PER_BLOCK" : e.perChannel ? "PER_CHANNEL" : "PER_TENSOR",
    ]
    if let b = e.blockSize { d["block_size"] = b }
    return d
  }

  static func v2(_ name: String, _ e: Entry) -> [String: Any] {
    var d: [String: Any] = ["name": name, "output_dtype": (e.signed ? "int" : "uint") + String(e.bits)]
    let one = !e.perChannel && e.scales.count == 1
    d["y_scale"] = one ? Double(e.scales[0]) as Any : e.scales.map(Double.init) as Any
    if e.zeroPoints.contains(where: { $0 != 0 }) { d["y_zero_point"] = one ? e.zeroPoints[0] as Any : e.zeroPoints as Any }
    if let a = e.axis, e.perChannel { d["axis"] = a }
    if let b = e.blockSize { d["block_size"] = b }
    return d
  }

  /// Reads a file of any of the three versions (0.6.1 when it states none, as AIMET does).
  public init(json data: Data, source: String) throws {
    func bad(_ why: String) -> LowbitError { LowbitError.invalidInput("encodings file '\(source)': \(why)") }
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: data)
    } catch {
      throw bad("not JSON (\(error.localizedDescription))")
    }
    guard let root = object as? [String: Any] else { throw bad("the top level is not an object") }
    let stated = root["version"] as? String ?? "0.6.1"
    guard let version = Version(rawValue: stated) else {
      throw bad("version '\(stated)' is not one lowbit reads (0.6.1, 1.0.0, 2.0.0)")
    }
    self.version = version
    parameters = [:]
    activations = [:]
    func int(_ v: Any?, _ what: String) throws -> Int {
      guard let n = v as? NSNumber, let i = Int(exactly: n.doubleValue), abs(i) <= 1 << 40 else {
        throw bad("\(what) is not an integer of a sensible size")
      }
      return i
    }
    func float(_ v: Any?, _ what: String) throws -> Float {
      guard let n = v as? NSNumber else { throw bad("\(what) is not a number") }
      return n.floatValue
    }
    func list(_ v: Any?) -> [Any]? { v.map { ($0 as? [Any]) ?? [$0] } }
    switch version {
    case .v0_6_1:
      for (key, isParam) in [("param_encodings", true), ("activation_encodings", false)] {
        guard let group = root[key] as? [String: Any] ?? (root[key] == nil ? [:] : nil) else { throw bad("\(key) is not an object") }
        for (name, value) in group {
          guard let channels = value as? [[String: Any]], let first = channels.first else { throw bad("'\(name)' has no encodings") }
          let bits = try int(first["bitwidth"], "'\(name)' bitwidth")
          let signed = (first["is_symmetric"] as? String) == "True"
          let zs = try channels.map { -(try int($0["offset"], "'\(name)' offset")) - (signed ? 1 << (bits - 1) : 0) }
          let entry = Entry(
            bits: bits, signed: signed, scales: try channels.map { try float($0["scale"], "'\(name)' scale") }, zeroPoints: zs,
            axis: nil, blockSize: nil, perChannel: channels.count > 1)
          if isParam { parameters[name] = entry } else { activations[name] = entry }
        }
      }
    case .v1_0_0:
      for (key, isParam) in [("param_encodings", true), ("activation_encodings", false)] {
        guard let group = root[key] as? [[String: Any]] ?? (root[key] == nil ? [] : nil) else { throw bad("\(key) is not a list") }
        for e in group {
          guard let name = e["name"] as? String else { throw bad("an entry of \(key) has no name") }
          guard (e["dtype"] as? String ?? "INT").uppercased() == "INT" else { throw bad("'\(name)' is not an integer encoding") }
          let bits = try int(e["bw"], "'\(name)' bw")
          let signed = e["is_sym"] as? Bool ?? false
          let scales = try (list(e["scale"]) ?? []).map { try float($0, "'\(name)' scale") }
          let zs = try (list(e["offset"]) ?? []).map { -(try int($0, "'\(name)' offset")) - (signed ? 1 << (bits - 1) : 0) }
          let type = e["enc_type"] as? String ?? "PER_TENSOR"
          guard ["PER_TENSOR", "PER_CHANNEL", "PER_BLOCK"].contains(type) else { throw bad("'\(name)' has enc_type \(type), which lowbit does not read") }
          let block = type == "PER_BLOCK" ? try int(e["block_size"], "'\(name)' block_size") : nil
          let entry = Entry(bits: bits, signed: signed, scales: scales, zeroPoints: zs, axis: nil, blockSize: block, perChannel: type != "PER_TENSOR")
          if isParam { parameters[name] = entry } else { activations[name] = entry }
        }
      }
    case .v2_0_0:
      guard let group = root["encodings"] as? [[String: Any]] else { throw bad("encodings is not a list") }
      for e in group {
        guard let name = e["name"] as? String, let type = e["output_dtype"] as? String else { throw bad("an entry has no name or output_dtype") }
        let signed = !type.hasPrefix("u")
        guard let bits = Int(type.drop { !$0.isNumber }), type.dropFirst(signed ? 0 : 1).hasPrefix("int") else {
          throw bad("'\(name)' has output_dtype \(type), not an integer type")
        }
        let scales = try (list(e["y_scale"]) ?? []).map { try float($0, "'\(name)' y_scale") }
        var zs = try (list(e["y_zero_point"]) ?? []).map { try int($0, "'\(name)' y_zero_point") }
        if zs.isEmpty { zs = Array(repeating: 0, count: scales.count) }
        let axis = try e["axis"].map { try int($0, "'\(name)' axis") }
        let block = try e["block_size"].map { try int($0, "'\(name)' block_size") }
        let entry = Entry(
          bits: bits, signed: signed, scales: scales, zeroPoints: zs, axis: axis, blockSize: block,
          perChannel: axis != nil || e["y_scale"] is [Any])
        // 2.0.0 does not say which tensors are parameters: the caller's sites do.
        activations[name] = entry
      }
    }
  }

  /// Every entry by name (parameters and activations).
  public var entries: [String: Entry] { parameters.merging(activations) { p, _ in p } }
}
