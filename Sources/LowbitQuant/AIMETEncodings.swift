import LowbitCore

/// Quantizers as an AIMET encodings file, the hand-over to Qualcomm's toolchain (QNN / SNPE) next
/// to the float model they apply to (white paper sec. 4.1: the float model with folded and
/// equalized weights plus the encodings).
///
/// An entry describes `x_int = clamp(round(x / s) + z)` for one tensor by name:
///
/// | version | layout | one entry |
/// | --- | --- | --- |
/// | 0.6.1 | `activation_encodings` / `param_encodings`: name -> [one dict per channel] | `bitwidth`, `is_symmetric` ("True"/"False"), `scale`, `offset` = `-(z - q_min)` of the unsigned grid, `min`, `max`, `dtype` "int" |
/// | 1.0.0 | the same two keys, lists of entries with `name` | `bw`, `is_sym`, `dtype` "INT", `enc_type` PER_TENSOR / PER_CHANNEL / PER_BLOCK (+ `block_size`), `scale` and `offset` lists, `offset` as in 0.6.1 |
/// | 2.0.0 | `encodings`: a list of entries with `name` | `output_dtype` ("int8", "uint4", ...), `y_scale`, `y_zero_point` (left out when 0), `axis`, `block_size` |
///
/// In 0.6.1 and 1.0.0 the offset is that of the unsigned grid (`-z` for unsigned grids,
/// `-(z + 2^(b-1))` for signed ones, so -128 for symmetric 8-bit weights); `is_sym` marks a signed
/// grid with zero point 0. aimet-onnx reads and writes all three.
public struct AIMETEncodings: Sendable, Equatable {
  public enum Version: String, Sendable, Codable, CaseIterable {
    case v0_6_1 = "0.6.1", v1_0_0 = "1.0.0", v2_0_0 = "2.0.0"
  }

  /// One tensor's grid as the file states it.
  public struct Entry: Sendable, Equatable {
    public var bits: Int
    public var signed: Bool
    public var scales: [Float]
    public var zeroPoints: [Int]
    /// Per-channel entries: the axis, when the file states it (2.0.0); per block: the block size.
    public var axis: Int?
    public var blockSize: Int?
    public var perChannel: Bool
  }

  public var version: Version
  public var parameters: [String: Entry]
  public var activations: [String: Entry]

  /// The encodings of `quantizers` at `sites`, in `version`. A grid without an AIMET form (the
  /// narrow grid) is refused. Each value of a `tied` group (`Calibration.tiedGroups`) without a
  /// quantizer of its own, a shared-grid Concat's output, gets its group's activation entry, since
  /// aimet-onnx quantizes it with the same tied quantizer.
  public init(sites: [QuantizerSite], quantizers: [String: TensorQuantizer], version: Version, tied: [[String]] = []) throws {
    self.version = version
    parameters = [:]
    activations = [:]
    for site in sites {
      guard let q = quantizers[site.name] else { continue }
      guard !q.grid.narrow else {
        throw LowbitError.unsupported("quantizer '\(site.name)': AIMET encodings have no narrow grid [-(2^(b-1) - 1), 2^(b-1) - 1]")
      }
      var entry = Entry(
        bits: q.grid.bits, signed: q.grid.signed, scales: q.params.map(\.scale), zeroPoints: q.params.map(\.zeroPoint),
        axis: nil, blockSize: nil, perChannel: false)
      switch q.granularity {
      case .perTensor: break
      case .perChannel(let axis): (entry.axis, entry.perChannel) = (axis, true)
      case .perGroup(let axis, let size): (entry.axis, entry.blockSize, entry.perChannel) = (axis, size, true)
      }
      if site.kind == .weight { parameters[site.name] = entry } else { activations[site.name] = entry }
    }
    for group in tied {
      guard let entry = group.first(where: { activations[$0] != nil }).flatMap({ activations[$0] }) else { continue }
      for v in group where activations[v] == nil { activations[v] = entry }
    }
  }

  /// The quantizer an entry describes at `site` (its channel axis from the site when the file
  /// does not state one).
  public static func quantizer(_ e: Entry, at site: QuantizerSite) throws -> TensorQuantizer {
    guard IntegerGrid.supportedBits.contains(e.bits) else {
      throw LowbitError.unsupported("encoding for '\(site.name)': \(e.bits)-bit grids are not supported (2 to 16)")
    }
    let grid = IntegerGrid(bits: e.bits, signed: e.signed)
    guard !e.scales.isEmpty, e.scales.count == e.zeroPoints.count,
          e.scales.allSatisfy({ $0.isFinite && $0 > 0 }),
          e.zeroPoints.allSatisfy({ (grid.qmin...grid.qmax).contains($0) })
    else {
      throw LowbitError.invalidInput("encoding for '\(site.name)': scales must be positive and finite, one zero point each, on the \(e.bits)-bit grid")
    }
    let granularity: Granularity
    if let size = e.blockSize {
      guard size > 0, let axis = e.axis ?? site.inputAxis else {
        throw LowbitError.invalidInput("encoding for '\(site.name)': a block size needs a positive size and an input axis")
      }
      granularity = .perGroup(axis: axis, size: size)
    } else if e.perChannel || e.scales.count > 1 {
      guard let axis = e.axis ?? site.channelAxis else {
        throw LowbitError.invalidInput("encoding for '\(site.name)': \(e.scales.count) scales, but no channel axis for this tensor")
      }
      granularity = .perChannel(axis: axis)
    } else {
      granularity = .perTensor
    }
    let params = zip(e.scales, e.zeroPoints).map { QuantParams(scale: $0, zeroPoint: $1) }
    return TensorQuantizer(
      grid: grid, symmetric: e.signed && e.zeroPoints.allSatisfy { $0 == 0 }, granularity: granularity, params: params)
  }
}
