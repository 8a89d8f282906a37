import LowbitCore

extension Collective {
  /// Replaces `tensors` on every rank by `root`'s (names, dtypes, shapes and values; any storage).
  /// The root encodes its dictionary in sorted name order and broadcasts the bytes.
  public func broadcast(_ tensors: inout [String: Tensor], root: Int = 0) throws {
    guard size > 1 else { return }
    var bytes = rank == root ? TensorCoding.encode(tensors) : []
    try broadcast(&bytes, root: root)
    if rank != root { tensors = try TensorCoding.decode(bytes) }
  }

  /// Replaces the initializers of `graph` on every rank by `root`'s, so every rank continues from
  /// identical parameters (e.g. after each rank calibrated quantizers on its own shard, or
  /// initialized parameters itself). The graph's structure is not sent: it must be the same.
  public func broadcastInitializers(of graph: inout Graph, root: Int = 0) throws {
    guard size > 1 else { return }
    var initializers = graph.initializers
    try broadcast(&initializers, root: root)
    graph.initializers = initializers
  }

  /// Element-wise reduction over all ranks of every float tensor in `tensors`, flattened in
  /// sorted name order into one `allreduce`. Every rank must hold the same names and shapes.
  public func allreduce(_ tensors: inout [String: Tensor], _ operation: ReduceOperation) throws {
    guard size > 1 else { return }
    let names = tensors.keys.sorted()
    var flat = try TensorCoding.flatten(tensors, names: names)
    try allreduce(&flat, operation)
    TensorCoding.unflatten(flat, into: &tensors, names: names)
  }

  /// The weighted mean over ranks of every float tensor in `tensors`:
  /// `result = sum over ranks r of weight_r * tensors_r`, where `weight` is this rank's share
  /// (the shares should add up to 1; default `1 / size`, the plain mean). Training weights a
  /// rank's mean gradient by its share of the global batch, `n_r / N`, which gives the mean
  /// gradient over the global batch.
  public func average(_ tensors: inout [String: Tensor], weight: Float? = nil) throws {
    guard size > 1 else { return }
    let w = weight ?? 1 / Float(size)
    let names = tensors.keys.sorted()
    var flat = try TensorCoding.flatten(tensors, names: names)
    for i in flat.indices { flat[i] *= w }
    try allreduce(&flat, .sum)
    TensorCoding.unflatten(flat, into: &tensors, names: names)
  }
}

/// Flattening and a compact byte form of tensor dictionaries, for collectives.
enum TensorCoding {
  /// The float values of `names`' tensors, concatenated.
  static func flatten(_ tensors: [String: Tensor], names: [String]) throws -> [Float] {
    var flat: [Float] = []
    flat.reserveCapacity(names.reduce(0) { $0 + tensors[$1]!.count })
    for name in names {
      let t = tensors[name]!
      guard t.dtype.isFloatingPoint else {
        throw LowbitError.invalidArgument("tensor '\(name)' is \(t.dtype), only float tensors can be reduced across ranks")
      }
      flat += t.floats
    }
    return flat
  }

  /// The inverse of `flatten`: `names`' tensors get consecutive slices of `flat`, shapes kept.
  static func unflatten(_ flat: [Float], into tensors: inout [String: Tensor], names: [String]) {
    var offset = 0
    for name in names {
      let t = tensors[name]!
      tensors[name] = Tensor(dtype: t.dtype, shape: t.shape, storage: .float(Array(flat[offset..<(offset + t.count)])))
      offset += t.count
    }
  }

  /// Bytes: count, then per tensor in sorted name order: name, dtype, shape, values; integers
  /// little-endian UInt64, floats as their bit patterns.
  static func encode(_ tensors: [String: Tensor]) -> [UInt8] {
    var out: [UInt8] = []
    ByteLayout.appendLittleEndian(UInt64(tensors.count), to: &out)
    for name in tensors.keys.sorted() {
      let t = tensors[name]!
      let utf8 = Array(name.utf8)
      ByteLayout.appendLittleEndian(UInt64(utf8.count), to: &out)
      out += utf8
      ByteLayout.appendLittleEndian(UInt64(t.dtype.rawValue), to: &out)
      ByteLayout.appendLittleEndian(UInt64(t.shape.count), to: &out)
      for d in t.shape { ByteLayout.appendLittleEndian(UInt64(d), to: &out) }
      out.reserveCapacity(out.count + 8 * t.count)
      switch t.storage {
      case .float(let v): for x in v { ByteLayout.appendLittleEndian(x.bitPattern, to: &out) }
      case .int(let v): for x in v { ByteLayout.appendLittleEndian(UInt64(bitPattern: x), to: &out) }
      case .bool(let v): out += v.map { $0 ? 1 : 0 }
      }
    }
    return out
  }

  /// Decodes `encode`'s bytes; throws for anything malformed.
  static func decode(_ bytes: [UInt8]) throws -> [String: Tensor] {
    var offset = 0
    func bad() -> LowbitError { LowbitError.invalidInput("the tensors broadcast by the root rank are malformed") }
    func read<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
      guard offset + MemoryLayout<T>.size <= bytes.count else { throw bad() }
      defer { offset += MemoryLayout<T>.size }
      return ByteLayout.readLittleEndian(bytes, at: offset, as: T.self)
    }
    func count() throws -> Int {
      let n = try read(UInt64.self)
      guard n <= UInt64(bytes.count) else { throw bad() }
      return Int(n)
    }
    var result: [String: Tensor] = [:]
    for _ in 0..<(try count()) {
      let length = try count()
      guard offset + length <= bytes.count else { throw bad() }
      let name = String(decoding: bytes[offset..<(offset + length)], as: UTF8.self)
      offset += length
      guard let dtype = DType(rawValue: Int(try read(UInt64.self))) else { throw bad() }
      let shape = try (0..<(try count())).map { _ in try count() }
      let elements = try shape.reduce(1) { product, d in
        let (p, overflow) = product.multipliedReportingOverflow(by: d)
        guard !overflow, p <= bytes.count else { throw bad() }
        return p
      }
      let storage: Tensor.Storage
      switch dtype.storageClass {
      case .float:
        guard elements <= (bytes.count - offset) / 4 else { throw bad() }
        storage = .float(try (0..<elements).map { _ in Float(bitPattern: try read(UInt32.self)) })
      case .int:
        guard elements <= (bytes.count - offset) / 8 else { throw bad() }
        storage = .int(try (0..<elements).map { _ in Int64(bitPattern: try read(UInt64.self)) })
      case .bool:
        guard elements <= bytes.count - offset else { throw bad() }
        storage = .bool(bytes[offset..<(offset + elements)].map { $0 != 0 })
        offset += elements
      }
      result[name] = Tensor(dtype: dtype, shape: shape, storage: storage)
    }
    guard offset == bytes.count else { throw bad() }
    return result
  }
}
