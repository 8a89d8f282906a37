import CZlib
import LowbitCore

/// The largest output lowbit inflates from one compressed stream: 2 GiB.
let inflateLimit = 2 << 30

/// A zlib inflate stream over compressed bytes held in memory, read piece by piece so that a
/// caller can stop as soon as it has what a header promised (the guard against decompression
/// bombs: output is produced, and memory grows, only as far as it is asked for).
final class InflateStream {
  private let stream: UnsafeMutablePointer<z_stream>
  private let input: ArraySlice<UInt8>
  /// Compressed bytes consumed so far.
  private var consumed = 0
  private let name: String
  /// Whether the compressed stream has ended.
  private(set) var finished = false

  /// Opens `bytes` for inflating; `windowBits` 15 + 32 reads zlib or gzip, -15 raw deflate.
  init(_ bytes: ArraySlice<UInt8>, windowBits: Int32, name: String) throws {
    self.name = name
    input = bytes
    // The z_stream lives on the heap: zlib keeps a pointer back to it and checks it on each call.
    stream = .allocate(capacity: 1)
    stream.initialize(to: z_stream())
    let rc = inflateInit2_(stream, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
    guard rc == Z_OK else {
      stream.deinitialize(count: 1)
      stream.deallocate()
      throw LowbitError.io("\(name): zlib cannot start inflating (code \(rc))")
    }
  }

  convenience init(_ bytes: [UInt8], windowBits: Int32, name: String) throws {
    try self.init(bytes[...], windowBits: windowBits, name: name)
  }

  deinit {
    inflateEnd(stream)
    stream.deinitialize(count: 1)
    stream.deallocate()
  }

  /// Up to `count` bytes of output; fewer only when the stream ends. Throws on corrupt or
  /// truncated data. Memory grows with the output actually produced, not with `count`.
  func read(_ count: Int) throws -> [UInt8] {
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: min(count, 1 << 20))
    while output.count < count && !finished {
      let want = min(count - output.count, chunk.count)
      let (rc, produced, inputLeft) = input.withUnsafeBufferPointer { source in
        chunk.withUnsafeMutableBufferPointer { out -> (Int32, Int, Bool) in
          // Safety: next_in/avail_in cover the unconsumed part of `source` and next_out/avail_out
          // the first `want` bytes of `out`; both stay pinned for this one inflate call, and zlib
          // reads them only during it. avail_in is 32-bit, so the input is fed in pieces.
          let piece = min(source.count - consumed, Int(UInt32.max))
          stream.pointee.next_in = source.baseAddress.map {
            UnsafeMutablePointer(mutating: $0 + consumed)
          }
          stream.pointee.avail_in = UInt32(piece)
          stream.pointee.next_out = out.baseAddress
          stream.pointee.avail_out = UInt32(want)
          let rc = inflate(stream, Z_NO_FLUSH)
          consumed += piece - Int(stream.pointee.avail_in)
          stream.pointee.next_in = nil
          stream.pointee.avail_in = 0
          return (rc, want - Int(stream.pointee.avail_out), consumed < source.count)
        }
      }
      output.append(contentsOf: chunk[0..<produced])
      switch rc {
      case Z_STREAM_END:
        finished = true
      case Z_OK:
        break
      case Z_BUF_ERROR where !inputLeft:
        throw LowbitError.invalidInput("\(name): compressed data ends early (truncated file)")
      default:
        let detail = stream.pointee.msg.map { String(cString: $0) } ?? "code \(rc)"
        throw LowbitError.invalidInput("\(name): corrupt compressed data (\(detail))")
      }
    }
    return output
  }
}

/// CRC-32 (the zip and gzip checksum) of `bytes`, by zlib.
func crc32Checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
  var crc = crc32(0, nil, 0)
  bytes.withUnsafeBufferPointer { buffer in
    var offset = 0
    while offset < buffer.count {
      let piece = min(buffer.count - offset, 1 << 30)
      // Safety: [offset, offset + piece) lies inside `buffer`.
      crc = crc32(crc, buffer.baseAddress! + offset, uInt(piece))
      offset += piece
    }
  }
  return UInt32(truncatingIfNeeded: crc)
}

/// CRC-32 of a whole array.
func crc32Checksum(_ bytes: [UInt8]) -> UInt32 { crc32Checksum(bytes[...]) }
