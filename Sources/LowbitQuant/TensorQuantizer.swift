import LowbitCore

/// Which elements share one scale and zero point.
public enum Granularity: Sendable, Equatable, Hashable, Codable {
  /// One grid for the whole tensor.
  case perTensor
  /// One grid per index along `axis` (output channels of a weight: axis 0 for Conv).
  case perChannel(axis: Int)
  /// One grid per block of `size` consecutive indices along `axis` (per-group / blockwise).
  case perGroup(axis: Int, size: Int)
}

/// A quantizer for one tensor: its grid, scheme, granularity and fitted parameters.
///
/// Parameters are laid out as ONNX QuantizeLinear expects: one per tensor, one per channel along
/// `axis`, or for groups a tensor of the input's shape with `axis` shrunk to `ceil(D / size)`.
public struct TensorQuantizer: Sendable, Equatable, Codable {
  public var grid: IntegerGrid
  public var symmetric: Bool
  public var granularity: Granularity
  public var params: [QuantParams]

  public init(grid: IntegerGrid, symmetric: Bool, granularity: Granularity, params: [QuantParams]) {
    self.grid = grid
    self.symmetric = symmetric
    self.granularity = granularity
    self.params = params
  }

  /// `axis` counted from the front of a shape of rank `rank` (ONNX's negative axes count from
  /// the end).
  static func normalized(_ axis: Int, rank: Int) -> Int { axis < 0 ? axis + rank : axis }

  /// A shape whose parameter shape under `granularity` is that of `channels` channels: `[C]`
  /// at a non-negative axis after ones, or for an axis counted from the end `[C, 1, ...]`, which
  /// also broadcasts along that axis (per-channel activations, whose rank the quantizer does not
  /// know).
  public static func channelShape(_ granularity: Granularity, channels: Int) -> [Int] {
    switch granularity {
    case .perTensor: return []
    case .perChannel(let axis), .perGroup(let axis, _):
      return axis < 0 ? [channels] + Array(repeating: 1, count: -axis - 1) : Array(repeating: 1, count: axis) + [channels]
    }
  }

  /// The shape an activation quantizer's scale and zero point are written with: `[]` for one
  /// grid, `channelShape` for one per channel; nil for what an activation cannot take (groups,
  /// or several parameters on a per-tensor quantizer).
  public var activationParamShape: [Int]? {
    switch granularity {
    case .perTensor: return params.count == 1 ? [] : nil
    case .perChannel: return Self.channelShape(granularity, channels: params.count)
    case .perGroup: return nil
    }
  }

  /// The shape of the scale tensor for an input of `shape`.
  public static func paramShape(_ granularity: Granularity, for shape: [Int]) -> [Int] {
    switch granularity {
    case .perTensor: return []
    case .perChannel(let axis): return [shape[normalized(axis, rank: shape.count)]]
    case .perGroup(let axis, let size):
      var s = shape
      s[axis] = (shape[axis] + size - 1) / size
      return s
    }
  }

  /// For each element of a tensor of `shape`, the index of its parameters.
  public static func paramIndex(_ granularity: Granularity, for shape: [Int]) -> (Int) -> Int {
    switch granularity {
    case .perTensor:
      return { _ in 0 }
    case .perChannel(let signed):
      let axis = normalized(signed, rank: shape.count)
      let inner = shape[(axis + 1)...].reduce(1, *), dim = shape[axis]
      return { ($0 / inner) % dim }
    case .perGroup(let axis, let size):
      let inner = shape[(axis + 1)...].reduce(1, *), dim = shape[axis]
      let groups = (dim + size - 1) / size
      return { i in
        let outer = i / (inner * dim), a = (i / inner) % dim, r = i % inner
        return (outer * groups + a / size) * inner + r
      }
    }
  }

  /// The elements grouped by parameter index (for range setting per channel or group).
  public static func partition(_ values: [Float], shape: [Int], _ granularity: Granularity) -> [[Float]] {
    let count = paramShape(granularity, for: shape).reduce(1, *)
    let index = paramIndex(granularity, for: shape)
    var parts = [[Float]](repeating: [], count: count)
    for (i, v) in values.enumerated() { parts[index(i)].append(v) }
    return parts
  }

  /// Checks that the granularity fits a tensor of `shape`.
  public func validate(for shape: [Int], name: String) throws {
    switch granularity {
    case .perTensor: break
    case .perChannel(let axis), .perGroup(let axis, _):
      guard axis >= 0 && axis < shape.count || (granularity == .perChannel(axis: axis) && axis < 0 && axis >= -shape.count) else {
        throw LowbitError.invalidArgument("quantizer for '\(name)': axis \(axis) does not exist in shape \(shape)")
      }
      if case .perGroup(_, let size) = granularity, size < 1 {
        throw LowbitError.invalidArgument("quantizer for '\(name)': group size must be positive")
      }
    }
    let expected = Self.paramShape(granularity, for: shape).reduce(1, *)
    guard params.count == expected else {
      throw LowbitError.invalidArgument("quantizer for '\(name)' has \(params.count) parameter sets, shape \(shape) needs \(expected)")
    }
  }

  /// `x_int` for every element.
  public func quantize(_ values: [Float], shape: [Int]) -> [Int64] {
    let index = Self.paramIndex(granularity, for: shape)
    return values.enumerated().map { i, x in Int64(UniformQuantizer.quantize(x, params[index(i)], grid)) }
  }

  /// `x_hat` for every element.
  public func fakeQuantize(_ values: [Float], shape: [Int]) -> [Float] {
    let index = Self.paramIndex(granularity, for: shape)
    return values.enumerated().map { i, x in UniformQuantizer.fakeQuantize(x, params[index(i)], grid) }
  }
}
