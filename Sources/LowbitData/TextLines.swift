import Foundation
import LowbitCore

/// The examples of a text file, one per line (`text:FILE`): where each line starts and ends, found
/// by one pass over the file in chunks, so a batch reads just its lines. Lines are split at `\n`
/// (a `\r` before it is dropped); blank lines (only spaces and tabs) are not examples.
public struct TextLines: Sendable {
  public let path: String
  /// Byte ranges of the example lines (without the line break), in file order.
  public let lines: [Range<Int>]
  /// 1-based line numbers in the file, parallel to `lines`, for messages.
  public let numbers: [Int]

  /// The longest line an example may have, in bytes.
  public static let maxLineBytes = 1 << 20

  init(path: String, lines: [Range<Int>], numbers: [Int]) {
    self.path = path
    self.lines = lines
    self.numbers = numbers
  }

  /// Indexes the file at `path`. A line longer than `maxLineBytes` is an error naming it.
  public static func index(_ path: String) throws -> TextLines {
    let size = try FileIO.size(path)
    guard let handle = FileHandle(forReadingAtPath: path) else { throw LowbitError.io("\(path): cannot open") }
    defer { try? handle.close() }
    var lines: [Range<Int>] = [], numbers: [Int] = []
    var start = 0, number = 1, offset = 0
    var blank = true
    func end(_ at: Int, crBefore: Bool) throws {
      let stop = crBefore ? at - 1 : at
      if !blank {
        guard stop - start <= maxLineBytes else {
          throw LowbitError.invalidInput("\(path):\(number): a line of \(stop - start) bytes; an example may have at most \(maxLineBytes)")
        }
        lines.append(start..<stop)
        numbers.append(number)
      }
      start = at + 1
      number += 1
      blank = true
    }
    var previous: UInt8 = 0
    while offset < size {
      let chunk = [UInt8]((try? handle.read(upToCount: 1 << 22)) ?? Data())
      guard !chunk.isEmpty else { throw LowbitError.io("\(path): the file shrank while it was read") }
      for (i, byte) in chunk.enumerated() {
        if byte == UInt8(ascii: "\n") {
          try end(offset + i, crBefore: previous == UInt8(ascii: "\r"))
        } else if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\t") && byte != UInt8(ascii: "\r") {
          blank = false
          if offset + i - start > maxLineBytes {
            throw LowbitError.invalidInput("\(path):\(number): a line longer than \(maxLineBytes) bytes, the most an example may have")
          }
        }
        previous = byte
      }
      offset += chunk.count
    }
    if start < size { try end(size, crBefore: previous == UInt8(ascii: "\r")) }
    guard !lines.isEmpty else { throw LowbitError.invalidInput("\(path): no lines with text") }
    return TextLines(path: path, lines: lines, numbers: numbers)
  }

  /// The first `n` examples.
  public func prefix(_ n: Int) -> TextLines {
    TextLines(path: path, lines: Array(lines.prefix(n)), numbers: Array(numbers.prefix(n)))
  }

  /// Examples `range` as strings; a line that is not UTF-8 is an error naming it.
  public func texts(_ range: Range<Int>) throws -> [String] {
    guard let first = range.first else { return [] }
    let span = lines[first].lowerBound..<lines[range.upperBound - 1].upperBound
    let bytes = try FileIO.read(path, from: span.lowerBound, count: span.count)
    return try range.map { i in
      let r = lines[i]
      guard let text = String(validating: bytes[(r.lowerBound - span.lowerBound)..<(r.upperBound - span.lowerBound)], as: UTF8.self) else {
        throw LowbitError.invalidInput("\(path):\(numbers[i]): not UTF-8 text")
      }
      return text
    }
  }

  /// The examples that are UTF-8, and a message for each that is not.
  func readable() throws -> (TextLines, skipped: [String]) {
    var keep: [Int] = [], skipped: [String] = []
    for i in lines.indices {
      do { _ = try texts(i..<i + 1); keep.append(i) } catch { skipped.append("\(error)") }
    }
    guard !keep.isEmpty else { throw LowbitError.invalidInput("\(path): no line is UTF-8 text") }
    return (TextLines(path: path, lines: keep.map { lines[$0] }, numbers: keep.map { numbers[$0] }), skipped)
  }
}

/// One input of tokenized text (`input_ids`, `attention_mask` or `token_type_ids`): each line of
/// a batch encoded when the batch is read, truncated and padded to `maxLength`.
struct TextRows: RowSource {
  enum Field: String, CaseIterable, Sendable {
    case inputIDs = "input_ids", attentionMask = "attention_mask", tokenTypeIDs = "token_type_ids"
  }

  let lines: TextLines
  let tokenizer: Tokenizer
  let field: Field
  let maxLength: Int
  let dtype: DType

  var rowShape: [Int] { [maxLength] }

  /// A batch's lines read in one piece.
  func rows(_ range: Range<Int>) throws -> Tensor { try encoded(try lines.texts(range)) }

  func rows(at indices: [Int]) throws -> Tensor { try encoded(try indices.flatMap { try lines.texts($0..<$0 + 1) }) }

  /// `texts` encoded on all cores, this column's field of each as a row.
  func encoded(_ texts: [String]) throws -> Tensor {
    let encodings = parallelIndexedMap(texts.count, costPerItem: 4096) { tokenizer.encode(texts[$0], maxLength: maxLength) }
    var values: [Int64] = []
    values.reserveCapacity(texts.count * maxLength)
    for e in encodings {
      let v: [Int]
      switch field {
      case .inputIDs: v = e.ids
      case .attentionMask: v = e.attentionMask
      case .tokenTypeIDs: v = e.typeIds
      }
      guard v.count == maxLength else {
        throw LowbitError.invalidInput("\(lines.path): an encoding of \(v.count) tokens where \(maxLength) were expected")
      }
      values += v.map(Int64.init)
    }
    return Tensor(dtype: dtype, shape: [texts.count, maxLength], storage: .int(values))
  }
}
