import Foundation
import LowbitCore
import Testing

@testable import LowbitData

@Suite struct ImagePreprocessingTests {
  /// A seeded RGB image.
  static func image(width: Int, height: Int, seed: UInt64 = 1) -> RGBImage {
    var g = SplitMix64(seed: seed)
    return RGBImage(width: width, height: height, pixels: (0..<width * height * 3).map { _ in UInt8(truncatingIfNeeded: g.next()) })
  }

  @Test(arguments: [(1, 1), (7, 3), (40, 41)])
  func resizingToTheSameSizeIsTheIdentity(width: Int, height: Int) {
    let im = Self.image(width: width, height: height)
    #expect(ImageResampling.resized(im, width: width, height: height) == im)
  }

  @Test(arguments: [(13, 9, 5, 17), (100, 60, 37, 22), (3, 3, 300, 2)])
  func aConstantImageStaysConstant(w: Int, h: Int, ow: Int, oh: Int) {
    let im = RGBImage(width: w, height: h, pixels: Array(repeating: 173, count: w * h * 3))
    #expect(ImageResampling.resized(im, width: ow, height: oh).pixels.allSatisfy { $0 == 173 })
  }

  /// Each weight table sums to 2^22 up to rounding (one unit per tap), and taps stay inside.
  @Test(arguments: [(225, 180), (180, 225), (5, 300), (300, 5), (64, 64)])
  func weightsSumToOneInFixedPoint(input: Int, output: Int) {
    let axis = ImageResampling.Axis(input: input, output: output)
    for i in 0..<output {
      let sum = (0..<axis.count[i]).map { Int(axis.weights[i * axis.kernelSize + $0]) }.reduce(0, +)
      #expect(abs(sum - (1 << 22)) <= axis.count[i], "output \(i)")
      #expect(axis.start[i] >= 0 && axis.start[i] + axis.count[i] <= input)
    }
  }

  /// A crop of the resized image computes exactly the pixels of the full resize.
  @Test func aCropComputesTheSamePixelsAsTheFullResize() {
    let im = Self.image(width: 53, height: 71, seed: 3)
    let full = ImageResampling.resized(im, width: 31, height: 44)
    let part = ImageResampling.resized(im, width: 31, height: 44, rows: 10..<30, columns: 4..<25)
    for y in 10..<30 {
      for x in 4..<25 {
        for c in 0..<3 {
          #expect(part[((y - 10) * 21 + x - 4) * 3 + c] == full.pixels[(y * 31 + x) * 3 + c])
        }
      }
    }
  }

  @Test func normalizesInEitherLayoutAndOrder() {
    let im = RGBImage(width: 2, height: 1, pixels: [255, 0, 51, 0, 102, 255])
    var p = ImagePreprocessing(mean: [0.5, 0, 0], std: [0.5, 1, 2])
    let nchw = p.row(im).values
    #expect(nchw == [1, -1, 0, 0.4, 0.1, 0.5])
    p.layout = .nhwc
    p.channelOrder = .bgr
    // BGR: channel 0 is blue, normalized with mean[0], std[0].
    #expect(p.row(im).values == [(0.2 - 0.5) / 0.5, 0, 0.5, 1, 0.4, 0])
  }

  @Test func resizeSizesFollowTorchvision() throws {
    #expect(ImageResize.shorterSide(256).size(width: 500, height: 375) == ImageSize(height: 256, width: 341))
    #expect(ImageResize.shorterSide(297).size(width: 193, height: 152) == ImageSize(height: 297, width: 377))
    #expect(try ImageResize(parsing: "300x180") == .exact(ImageSize(height: 300, width: 180)))
    #expect(throws: LowbitError.self) { try ImageSize(parsing: "0") }
    #expect(throws: LowbitError.self) { try ImageSize(parsing: "3x4x5") }
  }

  @Test func defaultsComeFromTheModelInput() throws {
    let nchw = ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(260), .fixed(260)])
    let (p, size) = try DataOptions().imagePreprocessing(for: nchw)
    #expect(size == ImageSize(height: 260, width: 260) && p.resize == .shorterSide(297) && p.layout == .nchw)
    #expect(p.mean == ImagePreprocessing.imageNetMean && p.std == ImagePreprocessing.imageNetStd)
    let nhwc = ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(224), .fixed(224), .fixed(3)])
    #expect(try DataOptions().imagePreprocessing(for: nhwc).0.layout == .nhwc)
    var none = DataOptions()
    none.preprocess = DataOptions.Preset.none
    let dynamic = ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .symbol("H"), .symbol("W")])
    #expect(throws: LowbitError.self) { try none.imagePreprocessing(for: dynamic) }
    let gray = ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(1), .fixed(28), .fixed(28)])
    #expect(throws: LowbitError.self) { try DataOptions().imagePreprocessing(for: gray) }
  }

  @Test func refusesWhatIsNotAnImage() {
    #expect(throws: LowbitError.self) { try ImageDecoding.decode([0xFF, 0xD8, 0xFF, 0xE0, 0, 0], name: "x.jpg") }
    #expect(throws: LowbitError.self) { try ImageDecoding.decode([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0], name: "x.png") }
    #expect(throws: LowbitError.self) { try ImageDecoding.decode(Array("hello".utf8), name: "x.png") }
  }
}
