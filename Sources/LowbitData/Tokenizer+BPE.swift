import Foundation
import LowbitCore
import Synchronization

/// The `BPE` model: a word starts as one symbol per scalar and adjacent symbols are merged by the
/// lowest-ranked applicable merge (the leftmost on ties) until none applies.
struct BPEModel: Sendable {
  struct Merge: Sendable {
    let rank: Int32
    let id: Int32
  }

  let vocab: [[UInt8]: Int]
  /// Merges keyed by `leftId << 32 | rightId`; the rank is the merge's position in the file.
  let merges: [UInt64: Merge]
  let unkId: Int?
  let prefix: [UInt8]
  let suffix: [UInt8]
  let fuseUnknown: Bool
  let ignoreMerges: Bool
  /// The ids of `<0x00>` … `<0xFF>` (nil where absent) when `byte_fallback` is on.
  let byteIds: [Int?]?
  let cache = BPEWordCache(capacity: 10_000)

  init(_ node: TokenizerJSONNode) throws {
    let vocabNode = try node.required("vocab")
    vocab = try loadTokenizerVocab(vocabNode)
    guard vocab.values.allSatisfy({ $0 <= Int(Int32.max) }) else { throw vocabNode.invalid("token id above 2^31 - 1") }
    if let dropout = try node.member("dropout"), try dropout.double() != 0 {
      throw dropout.unsupported("BPE dropout is random; only null or 0 is supported")
    }
    if let unk = try node.optionalString("unk_token") {
      guard let id = vocab[Array(unk.utf8)] else {
        throw node.invalid("unk_token '\(unk)' is not in the vocabulary")
      }
      unkId = id
    } else {
      unkId = nil
    }
    prefix = Array((try node.optionalString("continuing_subword_prefix") ?? "").utf8)
    suffix = Array((try node.optionalString("end_of_word_suffix") ?? "").utf8)
    fuseUnknown = try node.bool("fuse_unk", default: false)
    ignoreMerges = try node.bool("ignore_merges", default: false)
    if try node.bool("byte_fallback", default: false) {
      let vocab = self.vocab
      byteIds = (0..<256).map { byte -> Int? in
        let hex = String(byte, radix: 16, uppercase: true)
        return vocab[Array("<0x\(hex.count == 1 ? "0" + hex : hex)>".utf8)]
      }
    } else {
      byteIds = nil
    }
    var merges: [UInt64: Merge] = [:]
    let mergeNodes = try node.required("merges").elements()
    merges.reserveCapacity(mergeNodes.count)
    for (rank, mergeNode) in mergeNodes.enumerated() {
      let left: String
      let right: String
      if case .string(let line) = mergeNode.value {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw mergeNode.invalid("a merge must be two tokens separated by one space") }
        (left, right) = (String(parts[0]), String(parts[1]))
      } else {
        let pair = try mergeNode.elements()
        guard pair.count == 2 else { throw mergeNode.invalid("a merge must be a pair of tokens") }
        (left, right) = (try pair[0].string(), try pair[1].string())
      }
      var rightBytes = Array(right.utf8)
      let leftBytes = Array(left.utf8)
      guard let leftId = vocab[leftBytes], let rightId = vocab[rightBytes] else {
        throw mergeNode.invalid("merge '\(left) \(right)' uses a token that is not in the vocabulary")
      }
      if !prefix.isEmpty, rightBytes.starts(with: prefix) { rightBytes.removeFirst(prefix.count) }
      guard let mergedId = vocab[leftBytes + rightBytes] else {
        throw mergeNode.invalid("merged token of '\(left) \(right)' is not in the vocabulary")
      }
      guard rank < Int32.max else { throw mergeNode.invalid("too many merges") }
      merges[UInt64(leftId) << 32 | UInt64(rightId)] = Merge(rank: Int32(rank), id: Int32(mergedId))
    }
    self.merges = merges
  }

  /// Appends the ids of `word` (scalars, already byte-mapped for byte-level vocabularies).
  func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
    var key: [UInt8] = []
    key.reserveCapacity(word.count)
    for c in word { UTF8.encode(c) { key.append($0) } }
    if ignoreMerges, let id = vocab[key] { ids.append(id); return }
    if let cached = cache.lookup(key) { ids.append(contentsOf: cached); return }
    let result = merged(word)
    cache.store(key, result)
    ids.append(contentsOf: result)
  }

  /// The initial symbols (scalar, with prefix/suffix, or its byte fallbacks, or unknown), then merged.
  func merged(_ word: [Unicode.Scalar]) -> [Int] {
    var symbols: [Int32] = []
    symbols.reserveCapacity(word.count)
    var lastWasUnknown = false
    var piece: [UInt8] = []
    for (index, c) in word.enumerated() {
      piece.removeAll(keepingCapacity: true)
      if index > 0 { piece.append(contentsOf: prefix) }
      UTF8.encode(c) { piece.append($0) }
      if index == word.count - 1 { piece.append(contentsOf: suffix) }
      if let id = vocab[piece] {
        symbols.append(Int32(truncatingIfNeeded: id))
        lastWasUnknown = false
        continue
      }
      if let byteIds {
        var fallback: [Int32] = []
        UTF8.encode(c) { byte in
          if let id = byteIds[Int(byte)] { fallback.append(Int32(truncatingIfNeeded: id)) }
        }
        if fallback.count == c.utf8.count {
          symbols.append(contentsOf: fallback)
          lastWasUnknown = false
          continue
        }
      }
      guard let unkId else { continue }  // no unknown token: the scalar is dropped
      if !(fuseUnknown && lastWasUnknown) { symbols.append(Int32(truncatingIfNeeded: unkId)) }
      lastWasUnknown = true
    }
    return applyMerges(symbols).map { Int($0) }
  }

  func merge(_ left: Int32, _ right: Int32) -> Merge? {
    merges[UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))]
  }

  /// Merges symbols in order of (rank, position) with a min-heap; stale heap entries are skipped.
  func applyMerges(_ start: [Int32]) -> [Int32] {
    let n = start.count
    guard n > 1 else { return start }
    var ids = start
    var next = Array(1...n).map { $0 == n ? -1 : $0 }
    var prev = Array(-1..<(n - 1))
    var alive = [Bool](repeating: true, count: n)
    var heap = BPEMergeHeap()
    for i in 0..<(n - 1) {
      if let m = merge(ids[i], ids[i + 1]) { heap.push(rank: m.rank, position: i) }
    }
    while let (rank, pos) = heap.pop() {
      let right = next[pos]
      guard alive[pos], right >= 0, let m = merge(ids[pos], ids[right]), m.rank == rank else { continue }
      ids[pos] = m.id
      alive[right] = false
      let after = next[right]
      next[pos] = after
      if after >= 0 { prev[after] = pos }
      let before = prev[pos]
      if before >= 0, let m = merge(ids[before], ids[pos]) { heap.push(rank: m.rank, position: before) }
      if after >= 0, let m = merge(ids[pos], ids[after]) { heap.push(rank: m.rank, position: pos) }
    }
    var out: [Int32] = []
    var i = 0
    while i >= 0 {
      out.append(ids[i])
      i = next[i]
    }
    return out
  }
}

/// A binary min-heap of (rank, position) pairs packed into one integer.
struct BPEMergeHeap {
  var items: [UInt64] = []

  mutating func push(rank: Int32, position: Int) {
    items.append(UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(truncatingIfNeeded: position)))
    var child = items.count - 1
    while child > 0 {
      let parent = (child - 1) / 2
      guard items[child] < items[parent] else { break }
      items.swapAt(child, parent)
      child = parent
    }
  }

  mutating func pop() -> (rank: Int32, position: Int)? {
    guard let top = items.first else { return nil }
    let last = items.removeLast()
    if !items.isEmpty {
      items[0] = last
      var parent = 0
      while true {
        let left = 2 * parent + 1
        let right = left + 1
        var smallest = parent
        if left < items.count, items[left] < items[smallest] { smallest = left }
        if right < items.count, items[right] < items[smallest] { smallest = right }
        if smallest == parent { break }
        items.swapAt(parent, smallest)
        parent = smallest
      }
    }
    return (Int32(truncatingIfNeeded: top >> 32), Int(UInt32(truncatingIfNeeded: top)))
  }
}

/// A bounded, lock-protected cache of BPE results per word (UTF-8 bytes → ids); once full, new
/// words are no longer added.
final class BPEWordCache: Sendable {
  private let entries = Mutex<[[UInt8]: [Int]]>([:])
  private let capacity: Int

  init(capacity: Int) { self.capacity = capacity }

  func lookup(_ key: [UInt8]) -> [Int]? {
    entries.withLock { $0[key] }
  }

  func store(_ key: [UInt8], _ ids: [Int]) {
    entries.withLock { if $0.count < capacity { $0[key] = ids } }
  }
}
