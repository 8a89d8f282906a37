import LowbitCore

/// One input (or the labels) of a data set, rows along the first dimension: a tensor in memory,
/// an array in a `.npy` file whose rows are read when a batch asks for them, or rows made on
/// demand from other files (decoded images, tokenized text), so a data set larger than memory
/// streams through calibration and evaluation.
public struct DataColumn: Sendable {
  public let dtype: DType
  public let shape: [Int]
  let backing: Backing

  enum Backing: Sendable {
    case memory(Tensor)
    /// C-order little-endian rows starting at `dataOffset` (the layout `NPY.Header` checked).
    case npyFile(path: String, dataOffset: Int)
    /// Rows made when asked for; `source.rowShape` is the shape of one row.
    case generated(any RowSource)
  }

  /// A column held in memory.
  public init(_ tensor: Tensor) {
    dtype = tensor.dtype
    shape = tensor.shape
    backing = .memory(tensor)
  }

  /// `count` rows made by `source` (images decoded, text tokenized) when a batch asks for them.
  init(_ source: any RowSource, dtype: DType, count: Int) {
    self.init(dtype: dtype, shape: [count] + source.rowShape, backing: .generated(source))
  }

  init(dtype: DType, shape: [Int], backing: Backing) {
    self.dtype = dtype
    self.shape = shape
    self.backing = backing
  }

  public var rank: Int { shape.count }
  /// Rows: the first dimension.
  public var count: Int { shape.first ?? 0 }

  /// Where the rows are read from when they are not in memory.
  public var path: String? {
    if case .npyFile(let path, _) = backing { return path }
    return nil
  }

  /// The first `n` rows (`n <= count`).
  public func prefix(_ n: Int) -> DataColumn {
    switch backing {
    case .memory(let t): return DataColumn(Self.rows(t, 0..<n))
    case .npyFile, .generated: return DataColumn(dtype: dtype, shape: [n] + shape.dropFirst(), backing: backing)
    }
  }

  /// Rows `range` (within `0..<count`) as a tensor; a file column reads just their bytes.
  public func rows(_ range: Range<Int>) throws -> Tensor {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "rows \(range) outside 0..<\(count)")
    switch backing {
    case .memory(let t):
      return Self.rows(t, range)
    case .npyFile(let path, let dataOffset):
      let width = shape.dropFirst().reduce(1, *)
      let rowBytes = dtype.packedByteCount(width)
      let bytes = try FileIO.read(path, from: dataOffset + range.lowerBound * rowBytes, count: range.count * rowBytes)
      return try NPY.checkedTensor(dtype: dtype, shape: [range.count] + shape.dropFirst(), bytes: bytes, name: path)
    case .generated(let source):
      return try source.rows(range)
    }
  }

  /// Rows `indices` (each within `0..<count`), in that order: gathered from memory, or read one
  /// by one from the file or made by the row source (images of a batch on all cores).
  public func rows(at indices: [Int]) throws -> Tensor {
    precondition(indices.allSatisfy { (0..<count).contains($0) }, "rows outside 0..<\(count)")
    switch backing {
    case .memory(let t):
      return Self.gather(t, indices)
    case .generated(let source):
      return try source.rows(at: indices)
    case .npyFile:
      let parts = try indices.map { try rows($0..<$0 + 1) }
      return Self.concatenated(parts, shape: [indices.count] + shape.dropFirst(), dtype: dtype)
    }
  }

  /// `parts` (rows of one column) stacked along the first dimension.
  static func concatenated(_ parts: [Tensor], shape: [Int], dtype: DType) -> Tensor {
    let storage: Tensor.Storage
    switch dtype.storageClass {
    case .float: storage = .float(parts.flatMap(\.floats))
    case .int: storage = .int(parts.flatMap(\.ints))
    case .bool: storage = .bool(parts.flatMap(\.bools))
    }
    return Tensor(dtype: dtype, shape: shape, storage: storage)
  }

  /// The rows `indices` (along the first dimension) of `tensor`, in that order, any storage.
  static func gather(_ tensor: Tensor, _ indices: [Int]) -> Tensor {
    let width = tensor.shape.dropFirst().reduce(1, *)
    let shape = [indices.count] + tensor.shape.dropFirst()
    func gather<T>(_ v: [T]) -> [T] {
      var out: [T] = []
      out.reserveCapacity(indices.count * width)
      for i in indices { out.append(contentsOf: v[(i * width)..<((i + 1) * width)]) }
      return out
    }
    switch tensor.storage {
    case .float(let v): return Tensor(dtype: tensor.dtype, shape: shape, storage: .float(gather(v)))
    case .int(let v): return Tensor(dtype: tensor.dtype, shape: shape, storage: .int(gather(v)))
    case .bool(let v): return Tensor(dtype: tensor.dtype, shape: shape, storage: .bool(gather(v)))
    }
  }

  /// Whether every value is finite without looking: rows made from images or tokens are.
  public var isFiniteByConstruction: Bool {
    if case .generated = backing { return true }
    return !dtype.isFloatingPoint
  }

  /// Every row in memory.
  public func loaded() throws -> Tensor {
    if case .memory(let t) = backing { return t }
    return try rows(0..<count)
  }

  /// Rows `range` of `tensor` along its first dimension.
  static func rows(_ tensor: Tensor, _ range: Range<Int>) -> Tensor {
    if range == 0..<(tensor.shape.first ?? 0) { return tensor }
    let width = tensor.shape.dropFirst().reduce(1, *)
    let elements = range.lowerBound * width..<range.upperBound * width
    let shape = [range.count] + tensor.shape.dropFirst()
    let storage: Tensor.Storage
    switch tensor.storage {
    case .float(let v): storage = .float(Array(v[elements]))
    case .int(let v): storage = .int(Array(v[elements]))
    case .bool(let v): storage = .bool(Array(v[elements]))
    }
    return Tensor(dtype: tensor.dtype, shape: shape, storage: storage)
  }
}

/// Rows of a column made on demand from other files (decoded images, tokenized text).
protocol RowSource: Sendable {
  /// The shape of one row.
  var rowShape: [Int] { get }
  /// Rows `indices`, in that order, as a tensor of shape `[indices.count] + rowShape`.
  func rows(at indices: [Int]) throws -> Tensor
  /// Rows `range`; by default `rows(at:)` of its indices (a source that reads a range in one
  /// piece says so).
  func rows(_ range: Range<Int>) throws -> Tensor
}

extension RowSource {
  func rows(_ range: Range<Int>) throws -> Tensor { try rows(at: Array(range)) }
}
