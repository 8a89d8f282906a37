import CZlib
import LowbitCore

/// The largest output lowbit inflates from one compressed stream: 2 GiB.
let inflateLimit = 2 << 30

/// A zlib inflate stream over compressed bytes held in memory, read piece by piece so that a
/// caller can stop as soon as it has what a header promised (the guard against decompression
/// bombs: output is produced, and memory grows, only as far as it is asked for).
final class InflateStream {
  private let stream: UnsafeMutablePointer<z_stream>
  private let input: UnsafeMutableBufferPointer<UInt8>
  private let name: String
  /// Whether the compressed stream has ended.
  private(set) var finished = false

  /// Opens `bytes` for inflating; `windowBits` 15 + 32 reads zlib or gzip, -15 raw deflate.
  init(_ bytes: some Collection<UInt8>, windowBits: Int32, name: String) throws {
    self.name = name
    input = .allocate(capacity: max(bytes.count, 1))
    _ = input.initialize(from: bytes)
    // The z_stream lives on the heap: zlib keeps a pointer back to it and checks it on each call.
    stream = .allocate(capacity: 1)
    stream.initialize(to: z_stream())
    stream.pointee.next_in = input.baseAddress
    stream.pointee.avail_in = 0
    let rc = inflateInit2_(stream, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
    guard rc == Z_OK else {
      stream.deinitialize(count: 1)
      stream.deallocate()
      input.deallocate()
      throw LowbitError.io("\(name): zlib cannot start inflating (code \(rc))")
    }
  }

  deinit {
    inflateEnd(stream)
    stream.deinitialize(count: 1)
    stream.deallocate()
    input.deallocate()
  }

  /// Compressed bytes not yet consumed.
  private var consumed = 0

  /// Up to `count` bytes of output; fewer only when the stream ends. Throws on corrupt or
  /// truncated data.
  func read(_ count: Int) throws -> [UInt8] {
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: min(count, 1 << 20))
    while output.count < count && !finished {
      let want = min(count - output.count, chunk.count)
      if stream.pointee.avail_in == 0 && consumed < input.count {
        // avail_in is 32-bit: feed the input in pieces.
        let piece = min(input.count - consumed, Int(UInt32.max))
        stream.pointee.next_in = input.baseAddress! + consumed
        stream.pointee.avail_in = UInt32(piece)
        consumed += piece
      }
      let (rc, produced) = chunk.withUnsafeMutableBufferPointer { out -> (Int32, Int) in
        // Safety: zlib writes at most `want` bytes into `out`, which holds at least that many.
        stream.pointee.next_out = out.baseAddress
        stream.pointee.avail_out = UInt32(want)
        let rc = inflate(stream, Z_NO_FLUSH)
        return (rc, want - Int(stream.pointee.avail_out))
      }
      output.append(contentsOf: chunk[0..<produced])
      switch rc {
      case Z_STREAM_END:
        finished = true
      case Z_OK:
        break
      case Z_BUF_ERROR where stream.pointee.avail_in == 0 && consumed == input.count:
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
