import LowbitCore

/// Samples to feed a model: one or more inputs and optional labels, all sharing their first
/// dimension `count`.
///
/// A value: built once by a throwing initializer that checks the shapes, then sliced into batches.
/// Inputs read from `.npy` files stay on disk and are read a batch at a time (`DataColumn`).
public struct Dataset: Sendable {
  /// The inputs in order; a nil name binds to the model's first input.
  public let inputs: [(name: String?, column: DataColumn)]
  /// Class labels: int64 of shape [count], or nil.
  public let labels: Tensor?
  /// The number of samples: the first dimension of every input and of the labels.
  public let count: Int
  /// Where the data came from (a data spec or a path), for messages.
  public let source: String
  /// The file each input came from, parallel to `inputs`, for messages.
  public let inputSources: [String]
  /// Inputs left out because they could not be read (`DataOptions.skipBadInputs`), one message
  /// each naming the file (and line).
  public var skipped: [String] = []

  /// Builds a data set, checking that there is at least one input, that every input has a first
  /// dimension, and that all first dimensions (and the labels') agree. Labels of shape [N] or
  /// [N, 1] with integer values (of any integer dtype, or floats holding whole numbers) become
  /// int64 [N]; anything else throws `LowbitError.invalidInput`.
  public init(
    inputs: [(name: String?, tensor: Tensor)], labels: Tensor? = nil, source: String,
    inputSources: [String]? = nil, labelSource: String? = nil
  ) throws {
    try self.init(
      columns: inputs.map { ($0.name, DataColumn($0.tensor)) }, labels: labels, source: source,
      inputSources: inputSources, labelSource: labelSource)
  }

  /// The same checks for inputs that may be read from files.
  public init(
    columns inputs: [(name: String?, column: DataColumn)], labels: Tensor? = nil, source: String,
    inputSources: [String]? = nil, labelSource: String? = nil
  ) throws {
    let sources = inputSources ?? Array(repeating: source, count: inputs.count)
    guard sources.count == inputs.count else {
      throw LowbitError.invalidArgument(
        "\(source): \(sources.count) input sources for \(inputs.count) inputs")
    }
    guard let first = inputs.first else { throw LowbitError.invalidInput("\(source): no inputs") }
    var names: Set<String> = []
    for (input, file) in zip(inputs, sources) {
      if let name = input.name, !names.insert(name).inserted {
        throw LowbitError.invalidInput("\(source): input '\(name)' given twice")
      }
      guard input.column.rank >= 1 else {
        throw LowbitError.invalidInput(
          "\(file): input is a scalar; it needs a first (sample) dimension")
      }
    }
    if inputs.count > 1 && inputs.contains(where: { $0.name == nil }) {
      throw LowbitError.invalidInput("\(source): several inputs, not all of them named")
    }
    let n = first.column.shape[0]
    guard n > 0 else {
      throw LowbitError.invalidInput("\(sources[0]): no samples (first dimension is 0)")
    }
    for (input, file) in zip(inputs, sources) where input.column.shape[0] != n {
      throw LowbitError.invalidInput(
        "\(file): \(input.column.shape[0]) samples (shape \(input.column.shape)), but \(sources[0]) has \(n)"
      )
    }
    self.inputs = inputs
    self.count = n
    self.source = source
    self.inputSources = sources
    if let labels {
      self.labels = try Dataset.checkedLabels(labels, count: n, name: labelSource ?? source)
    } else {
      self.labels = nil
    }
  }

  /// Labels as int64 [count], or an error naming `name`.
  static func checkedLabels(_ labels: Tensor, count: Int, name: String) throws -> Tensor {
    guard labels.rank == 1 || (labels.rank == 2 && labels.shape[1] == 1) else {
      throw LowbitError.invalidInput(
        "\(name): labels have shape \(labels.shape); expected [N] class indices")
    }
    guard labels.shape[0] == count else {
      throw LowbitError.invalidInput("\(name): \(labels.shape[0]) labels for \(count) samples")
    }
    switch labels.storage {
    case .int(let v):
      return Tensor(shape: [count], ints: v)
    case .float(let v):
      if let bad = v.firstIndex(where: { !($0.rounded() == $0 && abs($0) < 0x1p53) }) {
        throw LowbitError.invalidInput(
          "\(name): labels must be integers; element \(bad) is \(v[bad]) (\(labels.dtype))")
      }
      return Tensor(shape: [count], ints: v.map { Int64($0) })
    case .bool:
      throw LowbitError.invalidInput("\(name): labels are bool; expected integer class indices")
    }
  }

  /// Throws `LowbitError.invalidInput` at the first NaN or infinity in a floating-point input,
  /// naming the file, the input and the element's index. File columns are read in chunks.
  public func validateFinite() throws {
    for ((name, column), file) in zip(inputs, inputSources) where !column.isFiniteByConstruction {
      let width = max(column.shape.dropFirst().reduce(1, *), 1)
      let rowsPerChunk = max(1, (1 << 24) / width)
      for start in stride(from: 0, to: count, by: rowsPerChunk) {
        let chunk = try column.rows(start..<min(start + rowsPerChunk, count))
        guard case .float(let values) = chunk.storage, let found = values.firstIndex(where: { !$0.isFinite }) else { continue }
        let bad = start * width + found
        var index: [Int] = []
        var rest = bad
        for stride in Tensor.strides(of: column.shape) {
          index.append(rest / stride)
          rest %= stride
        }
        let label = name.map { "input '\($0)'" } ?? "input"
        let what = values[found].isNaN ? "NaN" : "\(values[found])"
        throw LowbitError.invalidInput(
          "\(file): \(label) holds \(what) at index \(index) (flat index \(bad)); inputs must be finite"
        )
      }
    }
  }

  /// The samples in `range` (within `0..<count`), sliced along the first dimension; rows of a
  /// file column are read here.
  public func batch(_ range: Range<Int>) throws -> (
    inputs: [(name: String?, tensor: Tensor)], labels: Tensor?
  ) {
    precondition(
      range.lowerBound >= 0 && range.upperBound <= count, "batch \(range) outside 0..<\(count)")
    return (
      try inputs.map { ($0.name, try $0.column.rows(range)) },
      labels.map { DataColumn.rows($0, range) }
    )
  }

  /// Consecutive ranges of at most `size` samples covering `0..<count`; the last may be shorter.
  public func batches(size: Int) -> [Range<Int>] {
    precondition(size > 0, "batch size must be positive")
    return stride(from: 0, to: count, by: size).map { $0..<min($0 + size, count) }
  }

  /// The first `min(limit, count)` samples.
  public func prefix(_ limit: Int) -> Dataset {
    let n = min(max(limit, 0), count)
    // Shapes were checked at construction and slicing keeps them consistent.
    var d = Dataset(
      checked: inputs.map { ($0.name, $0.column.prefix(n)) }, labels: labels.map { DataColumn.rows($0, 0..<n) },
      count: n, source: source, inputSources: inputSources)
    d.skipped = skipped
    return d
  }

  /// The same samples with every input in memory (for training, which gathers rows at random).
  public func loaded() throws -> Dataset {
    var d = Dataset(
      checked: try inputs.map { ($0.name, DataColumn(try $0.column.loaded())) }, labels: labels, count: count,
      source: source, inputSources: inputSources)
    d.skipped = skipped
    return d
  }

  private init(
    checked inputs: [(name: String?, column: DataColumn)], labels: Tensor?, count: Int, source: String,
    inputSources: [String]
  ) {
    self.inputs = inputs
    self.labels = labels
    self.count = count
    self.source = source
    self.inputSources = inputSources
  }
}
