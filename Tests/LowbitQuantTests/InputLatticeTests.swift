import LowbitCore
import LowbitData
import LowbitTestSupport
import Testing

@testable import LowbitQuant

/// Model inputs on a lattice (`ValueLattice`, `QuantConfig.inputPerChannel`): 8-bit pixels
/// normalized per channel by ImageNet's mean and std are quantized by a grid per colour channel
/// whose step is the pixel step `1 / (255 std_c)`, so every pixel comes back within one constant
/// offset per channel, below half a step.
@Suite struct InputLatticeTests {
  static let mean: [Float] = [0.485, 0.456, 0.406]
  static let std: [Float] = [0.229, 0.224, 0.225]
  static let grid = IntegerGrid(bits: 8, signed: false)

  /// `[n, 3, size, size]` images of 8-bit pixels in `pixels` (every value once in each run of
  /// `pixels.count`, in a scrambled order that `seed` shifts), normalized per channel as
  /// torchvision's `ToTensor` and `Normalize` do.
  static func images(_ n: Int, size: Int, seed: Int, pixels: ClosedRange<Int> = 0...255) -> Tensor {
    var values: [Float] = []
    for i in 0..<(n * 3 * size * size) {
      let c = (i / (size * size)) % 3
      let p = pixels.lowerBound + (i * 97 + seed) % pixels.count
      values.append((Float(p) / 255 - mean[c]) / std[c])
    }
    return Tensor(shape: [n, 3, size, size], floats: values)
  }

  @Test func findsThePixelLatticeOfEachChannel() throws {
    let x = Self.images(2, size: 16, seed: 1)
    let parts = try ChannelRangeObserver.channelValues(x, axis: -3, name: "x")
    for c in 0..<3 {
      var l = ValueLattice()
      l.observe(parts[c])
      let found = try #require(l.lattice())
      let step = 1 / (255 * Self.std[c])
      #expect(abs(found.step - step) <= 1e-5 * step, "channel \(c): \(found.step) vs \(step)")
      #expect(found.count == 256)
      let range = try #require(l.range(grid: Self.grid))
      #expect(abs(range.lowerBound - (-Self.mean[c] / Self.std[c])) <= 1e-5)
    }
  }

  /// A channel whose calibration pixels span 10...245 gets the pixel step all the same, the 20
  /// spare steps split below and above, so pixels 0 and 255 stay on the grid.
  @Test func spareStepsAreSplitAroundTheObservedValues() throws {
    let x = Self.images(1, size: 32, seed: 2, pixels: 10...245)
    var l = ValueLattice()
    l.observe(try ChannelRangeObserver.channelValues(x, axis: -3, name: "x")[0])
    let range = try #require(l.range(grid: Self.grid))
    let step = 1 / (255 * Self.std[0])
    #expect(abs((range.upperBound - range.lowerBound) - 255 * step) <= 1e-4)
    #expect(abs(range.lowerBound - (0 - Self.mean[0]) / Self.std[0]) <= 1e-4)
  }

  /// A 16-bit grid has 257 of its steps per pixel step: every pixel is a grid point (up to the
  /// one offset), and values between pixels, which a model may also be fed, round to d / 257
  /// instead of to whole pixels.
  @Test func aFinerGridDividesThePixelStep() throws {
    let x = Self.images(1, size: 32, seed: 3)
    var l = ValueLattice()
    l.observe(try ChannelRangeObserver.channelValues(x, axis: -3, name: "x")[1])
    let grid = IntegerGrid(bits: 16, signed: false)
    let range = try #require(l.range(grid: grid))
    let d = 1 / (255 * Self.std[1])
    let params = UniformQuantizer.params(lower: range.lowerBound, upper: range.upperBound, grid: grid, symmetric: false, powerOfTwo: false)
    #expect(abs(params.scale - d / 257) <= 1e-5 * d / 257)
    let pixels = (0...255).map { (Float($0) / 255 - Self.mean[1]) / Self.std[1] }
    let errors = pixels.map { UniformQuantizer.fakeQuantize($0, params, grid) - $0 }
    #expect(errors.allSatisfy { abs($0) <= 0.5 * params.scale + 1e-5 }, "largest \(errors.map(abs).max()!)")
    let between = pixels.dropLast().map { $0 + 0.3 * d }
    #expect(between.allSatisfy { abs(UniformQuantizer.fakeQuantize($0, params, grid) - $0) <= 0.5 * params.scale + 1e-5 })
  }

  @Test func valuesOffEveryLatticeOrTooManyHaveNone() {
    var noise = ValueLattice()
    noise.observe(randomTensor([500], seed: 3).floats)
    #expect(noise.lattice() == nil)
    var wide = ValueLattice()
    wide.observe((0..<1000).map { Float($0) / 999 })  // a lattice of 1000 points: wider than 8 bits
    #expect(wide.lattice()?.count == 1000)
    #expect(wide.range(grid: Self.grid) == nil)
    var many = ValueLattice()
    many.observe((0..<(ValueLattice.capacity + 1)).map { Float($0) })
    #expect(many.lattice() == nil)
    var positive = ValueLattice()  // on a lattice, but 8 bits of it cannot reach zero
    positive.observe((1000...1010).map { Float($0) })
    #expect(positive.range(grid: Self.grid) == nil)
  }

  /// A stem `input -> Conv -> Relu` whose input is also read by a Shape (as static padding
  /// computes it in exported EfficientNets).
  static func stem() -> Graph {
    Graph(
      nodes: [
        Node(name: "shape", opType: "Shape", inputs: ["input"], outputs: ["s"]),
        Node(name: "conv", opType: "Conv", inputs: ["input", "w", "b"], outputs: ["c"], attributes: ["pads": .ints([1, 1, 1, 1])]),
        Node(name: "relu", opType: "Relu", inputs: ["c"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "input", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(8), .fixed(8)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: ["w": randomTensor([4, 3, 3, 3], seed: 4), "b": randomTensor([4], seed: 5)])
  }

  @Test func anImageInputTakesAGridPerChannelOnItsLattice() throws {
    var config = QuantConfig.rangeSettingOnly
    config.quantizeWeights = false
    let graph = Self.stem()
    let sites = QuantizerPlacement.sites(in: graph, config: config)
    #expect(sites.first { $0.name == "input" }?.channelAxis == -3)
    let batches = (0..<2).map { ["input": Self.images(4, size: 8, seed: 10 + $0)] }
    let quantizers = try Calibration.activationQuantizers(graph, sites: sites, config: config, batches: FeedBatches(batches))
    let q = try #require(quantizers["input"])
    #expect(q.granularity == .perChannel(axis: -3))
    for c in 0..<3 {
      let step = 1 / (255 * Self.std[c])
      #expect(abs(q.params[c].scale - step) <= 1e-5 * step, "channel \(c)")
    }
    // Every pixel of images never seen comes back within half a step, by one offset per channel.
    let unseen = Self.images(2, size: 8, seed: 99)
    let parts = try ChannelRangeObserver.channelValues(unseen, axis: -3, name: "input")
    for c in 0..<3 {
      let p = q.params[c]
      let errors = parts[c].map { UniformQuantizer.fakeQuantize($0, p, Self.grid) - $0 }
      let spread = errors.max()! - errors.min()!
      #expect(abs(errors[0]) < 0.5 * p.scale && spread <= 1e-5, "channel \(c): offset \(errors[0]), spread \(spread)")
    }
    var perTensor = config
    perTensor.inputPerChannel = false
    #expect(QuantizerPlacement.sites(in: graph, config: perTensor).first { $0.name == "input" }?.channelAxis == nil)
  }
}
