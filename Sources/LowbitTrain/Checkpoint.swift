import Foundation
import LowbitCore
import LowbitData

/// Everything a `TrainingLoop` needs to continue bit for bit after an epoch: the parameters and
/// BatchNormalization running statistics, the optimizer state, the config (which fixes the
/// schedule and the shuffles), the epoch and step counts, the augmentation generator's state,
/// and the per-epoch history. The graph's structure is not stored: a checkpoint is resumed onto
/// the same model file, and its tensor names and shapes must match.
///
/// File format (version 1), all integers little-endian:
///
/// | bytes | content |
/// | --- | --- |
/// | 8 | magic `LOWBITCK` |
/// | 4 | format version, UInt32 = 1 |
/// | 8 | header length `H`, UInt64 |
/// | H | header: UTF-8 JSON object with `config`, `epoch`, `step`, `samples`, `data`, `augmentation_generator`, `history`, `ranks` (only when more than 1), `tensors` (a list of `{name, kind, shape}`, kind `parameter` or `statistics`) and, when not empty, `annotations` (string to string) |
/// | 8 | optimizer length `O`, UInt64 |
/// | O | the optimizer state: UTF-8 JSON of `TrainingOptimizer`'s `Codable` form (floats print in shortest round-trip form, so they read back exactly) |
/// | 4 x elements, per tensor | the tensors' values in header order, Float32 little-endian, row-major |
/// | 8 | FNV-1a 64-bit hash of every byte before it, UInt64 |
///
/// Files are written atomically (a temporary sibling, then `rename(2)`), so a crash leaves the
/// previous checkpoint intact. Reading checks the magic, version, lengths and hash and throws
/// `LowbitError.invalidInput` naming the file for anything else.
///
/// A data-parallel run (several ranks) is written by rank 0 alone; all ranks hold the same
/// parameters, statistics and optimizer state, and their augmentation generators are derived
/// from (seed, rank, epoch), so the file does not depend on the rank. It records the number of
/// ranks: resuming with the same number continues bit for bit.
public struct Checkpoint: Sendable, Equatable {
  public var config: TrainingConfig
  /// Completed epochs and optimizer steps.
  public var epoch: Int
  public var step: Int
  /// The number of training samples (the shuffles depend on it) and the data's spec.
  public var samples: Int
  public var dataSource: String
  public var augmentationGenerator: SplitMix64
  public var history: [EpochResult]
  public var optimizer: TrainingOptimizer
  /// The number of ranks that trained (1: a single process).
  public var ranks: Int
  /// Trainable parameters and BatchNormalization running statistics, by initializer name.
  public var parameters: [String: Tensor]
  public var statistics: [String: Tensor]
  /// Settings of the run beyond `config` that a resume must repeat (e.g. `lowbit qat`'s bit
  /// widths), as the command that wrote the checkpoint records them; empty for plain training.
  public var annotations: [String: String] = [:]

  public init(
    config: TrainingConfig, epoch: Int, step: Int, samples: Int, dataSource: String,
    augmentationGenerator: SplitMix64, history: [EpochResult], optimizer: TrainingOptimizer,
    parameters: [String: Tensor], statistics: [String: Tensor], ranks: Int = 1
  ) {
    self.config = config
    self.epoch = epoch
    self.step = step
    self.samples = samples
    self.dataSource = dataSource
    self.augmentationGenerator = augmentationGenerator
    self.history = history
    self.optimizer = optimizer
    self.parameters = parameters
    self.statistics = statistics
    self.ranks = ranks
  }

  static let magic = Array("LOWBITCK".utf8)
  static let version: UInt32 = 1

  struct Header: Codable {
    struct Entry: Codable {
      var name: String
      var kind: String
      var shape: [Int]
    }
    var config: TrainingConfig
    var epoch: Int
    var step: Int
    var samples: Int
    var data: String
    var augmentationGenerator: SplitMix64
    var history: [EpochResult]
    var tensors: [Entry]
    /// Absent for a single process, so such files are unchanged.
    var ranks: Int?
    var annotations: [String: String]?

    enum CodingKeys: String, CodingKey {
      case config, epoch, step, samples, data, history, tensors, ranks, annotations
      case augmentationGenerator = "augmentation_generator"
    }
  }

  static func encoder() -> JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return e
  }

  static func decoder() -> JSONDecoder {
    let d = JSONDecoder()
    d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return d
  }

  /// The file's bytes (see the format above).
  public func encoded() throws -> [UInt8] {
    let entries =
      parameters.keys.sorted().map { Header.Entry(name: $0, kind: "parameter", shape: parameters[$0]!.shape) }
      + statistics.keys.sorted().map { Header.Entry(name: $0, kind: "statistics", shape: statistics[$0]!.shape) }
    let header = Header(
      config: config, epoch: epoch, step: step, samples: samples, data: dataSource,
      augmentationGenerator: augmentationGenerator, history: history, tensors: entries, ranks: ranks > 1 ? ranks : nil,
      annotations: annotations.isEmpty ? nil : annotations)
    let headerBytes: [UInt8], optimizerBytes: [UInt8]
    do {
      headerBytes = [UInt8](try Self.encoder().encode(header))
      optimizerBytes = [UInt8](try Self.encoder().encode(optimizer))
    } catch {
      throw LowbitError.io("cannot encode the checkpoint: \(error)")
    }
    var out = Self.magic
    ByteLayout.appendLittleEndian(Self.version, to: &out)
    ByteLayout.appendLittleEndian(UInt64(headerBytes.count), to: &out)
    out += headerBytes
    ByteLayout.appendLittleEndian(UInt64(optimizerBytes.count), to: &out)
    out += optimizerBytes
    for entry in entries {
      let t = (entry.kind == "parameter" ? parameters : statistics)[entry.name]!
      out.reserveCapacity(out.count + 4 * t.count)
      for v in t.floats { ByteLayout.appendLittleEndian(v.bitPattern, to: &out) }
    }
    ByteLayout.appendLittleEndian(fnv1a64(out), to: &out)
    return out
  }

  /// Decodes the bytes of a checkpoint file; `source` names it in errors.
  public init(decoding bytes: [UInt8], source: String) throws {
    func bad(_ what: String) -> LowbitError { LowbitError.invalidInput("\(source): not a valid lowbit checkpoint (\(what))") }
    guard bytes.count >= 36, Array(bytes[0..<8]) == Self.magic else { throw bad("no LOWBITCK magic") }
    let hashOffset = bytes.count - 8
    guard ByteLayout.readLittleEndian(bytes, at: hashOffset, as: UInt64.self) == fnv1a64(bytes[0..<hashOffset]) else {
      throw bad("the content hash does not match: the file is truncated or damaged")
    }
    let version = ByteLayout.readLittleEndian(bytes, at: 8, as: UInt32.self)
    guard version == Self.version else { throw bad("format version \(version), this lowbit reads \(Self.version)") }
    var offset = 12
    func section() throws -> ArraySlice<UInt8> {
      guard offset + 8 <= hashOffset else { throw bad("a section length runs past the end") }
      let length = ByteLayout.readLittleEndian(bytes, at: offset, as: UInt64.self)
      offset += 8
      guard length <= UInt64(hashOffset - offset) else { throw bad("a section runs past the end") }
      defer { offset += Int(length) }
      return bytes[offset..<(offset + Int(length))]
    }
    let header: Header, optimizer: TrainingOptimizer
    do {
      header = try Self.decoder().decode(Header.self, from: Data(try section()))
      optimizer = try Self.decoder().decode(TrainingOptimizer.self, from: Data(try section()))
    } catch let error as LowbitError {
      throw error
    } catch {
      throw bad("unreadable header: \(error)")
    }
    var parameters: [String: Tensor] = [:], statistics: [String: Tensor] = [:]
    for entry in header.tensors {
      guard entry.shape.allSatisfy({ $0 >= 0 }) else { throw bad("tensor '\(entry.name)' has shape \(entry.shape)") }
      let count = entry.shape.reduce(1, *)
      guard count <= (hashOffset - offset) / 4 else { throw bad("tensor '\(entry.name)' runs past the end") }
      var values = [Float](repeating: 0, count: count)
      for i in 0..<count { values[i] = Float(bitPattern: ByteLayout.readLittleEndian(bytes, at: offset + 4 * i, as: UInt32.self)) }
      offset += 4 * count
      let tensor = Tensor(shape: entry.shape, floats: values)
      switch entry.kind {
      case "parameter": parameters[entry.name] = tensor
      case "statistics": statistics[entry.name] = tensor
      default: throw bad("tensor '\(entry.name)' has unknown kind '\(entry.kind)'")
      }
    }
    guard offset == hashOffset else { throw bad("\(hashOffset - offset) bytes after the last tensor") }
    self.init(
      config: header.config, epoch: header.epoch, step: header.step, samples: header.samples, dataSource: header.data,
      augmentationGenerator: header.augmentationGenerator, history: header.history, optimizer: optimizer,
      parameters: parameters, statistics: statistics, ranks: header.ranks ?? 1)
    self.annotations = header.annotations ?? [:]
  }

  /// Reads the checkpoint file at `path`.
  public init(contentsOf path: String) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw LowbitError.io("checkpoint '\(path)' cannot be read (no such file, or not readable)")
    }
    try self.init(decoding: [UInt8](data), source: path)
  }

  /// Writes the checkpoint to `path` atomically (a temporary sibling renamed into place).
  public func write(to path: String) throws {
    let bytes = try encoded()
    let url = URL(fileURLWithPath: path)
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).partial")
    do {
      try Data(bytes).write(to: temporary)
    } catch {
      try? FileManager.default.removeItem(at: temporary)
      throw LowbitError.io("cannot write checkpoint '\(path)': \(error.localizedDescription)")
    }
    guard rename(temporary.path, url.path) == 0 else {
      let reason = String(cString: strerror(errno))
      try? FileManager.default.removeItem(at: temporary)
      throw LowbitError.io("cannot move checkpoint '\(path)' into place: \(reason)")
    }
  }
}

extension TrainingLoop {
  /// The loop's complete state, for `Checkpoint.write(to:)`.
  public func checkpoint() -> Checkpoint {
    let g = trainer.graph.initializers
    return Checkpoint(
      config: config, epoch: epoch, step: step, samples: sampleCount, dataSource: dataSource,
      augmentationGenerator: augmentationGenerator, history: history, optimizer: optimizer,
      parameters: Dictionary(uniqueKeysWithValues: trainer.parameterNames.map { ($0, g[$0]!) }),
      statistics: Dictionary(uniqueKeysWithValues: trainer.bufferNames.map { ($0, g[$0]!) }), ranks: collective.size)
  }

  /// Continues the run `checkpoint` recorded, on `graph` (the same model it was made from, prepared
  /// the same way) and `data` (the same training data). Throws when the parameter or statistics
  /// names or shapes differ from the graph's, or the sample count differs. With several ranks
  /// every rank calls this with the same checkpoint (rank 0's tensors are broadcast again, so
  /// every rank continues from identical ones); a run continues bit for bit with as many ranks
  /// as `checkpoint.ranks`, and deterministically, but differently, with another number.
  public init(
    resuming checkpoint: Checkpoint, graph: Graph, training data: Dataset, collective: any Collective = SingleProcess()
  ) throws {
    try checkpoint.config.validate()
    var trainer = try Trainer(graph)
    for (kind, names, stored) in [
      ("parameters", trainer.parameterNames, checkpoint.parameters), ("statistics", trainer.bufferNames, checkpoint.statistics),
    ] {
      guard Set(names) == Set(stored.keys) else {
        let missing = Set(names).subtracting(stored.keys).sorted(), extra = Set(stored.keys).subtracting(names).sorted()
        throw LowbitError.invalidInput(
          "the checkpoint's \(kind) do not match the model's (missing: \(missing.prefix(3)), unknown: \(extra.prefix(3))); resume with the model the run started from")
      }
      for name in names where stored[name]!.shape != trainer.graph.initializers[name]!.shape {
        throw LowbitError.invalidInput(
          "checkpoint tensor '\(name)' has shape \(stored[name]!.shape), the model's \(trainer.graph.initializers[name]!.shape)")
      }
    }
    trainer.parameters = checkpoint.parameters
    var restored = trainer.graph
    for (name, t) in checkpoint.statistics { restored.initializers[name] = t }
    try collective.broadcastInitializers(of: &restored, root: 0)
    trainer = try Trainer(restored)
    guard data.count == checkpoint.samples else {
      throw LowbitError.invalidInput(
        "the checkpoint was made on \(checkpoint.samples) training samples (\(checkpoint.dataSource)), the data has \(data.count)")
    }
    guard (0...checkpoint.config.epochs).contains(checkpoint.epoch), checkpoint.step >= 0 else {
      throw LowbitError.invalidInput("the checkpoint is at epoch \(checkpoint.epoch) of \(checkpoint.config.epochs)")
    }
    try self.init(
      trainer: trainer, data: data, config: checkpoint.config, optimizer: checkpoint.optimizer,
      augmentationGenerator: checkpoint.augmentationGenerator, collective: collective)
    restoreProgress(epoch: checkpoint.epoch, step: checkpoint.step, history: checkpoint.history)
  }
}

/// FNV-1a, 64-bit: `h = 0xcbf29ce484222325; for b: h = (h ^ b) * 0x100000001b3`.
func fnv1a64<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
  var h: UInt64 = 0xcbf2_9ce4_8422_2325
  for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
  return h
}
