import Foundation
import LowbitCore
import LowbitQuant
import Testing

@Suite struct AIMETEncodingsTests {
  static let weight = QuantizerSite(name: "w", kind: .weight, producer: nil, consumer: "conv", channelAxis: 0, inputAxis: 1)
  static let activation = QuantizerSite(name: "x", kind: .activation, producer: "relu", consumer: nil, channelAxis: nil, inputAxis: nil)

  static func quantizers(weights: Granularity) -> [String: TensorQuantizer] {
    let w: TensorQuantizer
    switch weights {
    case .perTensor:
      w = TensorQuantizer(grid: IntegerGrid(bits: 4, signed: true), symmetric: true, granularity: .perTensor, params: [QuantParams(scale: 0.25, zeroPoint: 0)])
    default:
      w = TensorQuantizer(
        grid: IntegerGrid(bits: 8, signed: true), symmetric: true, granularity: weights,
        params: [QuantParams(scale: 0.011, zeroPoint: 0), QuantParams(scale: 0.0031, zeroPoint: 0)])
    }
    let x = TensorQuantizer(grid: IntegerGrid(bits: 8, signed: false), symmetric: false, granularity: .perTensor,
                            params: [QuantParams(scale: 0.0123, zeroPoint: 17)])
    return ["w": w, "x": x]
  }

  /// Every version reads back to the same grids, scales bit for bit.
  @Test(arguments: AIMETEncodings.Version.allCases)
  func everyVersionRoundTrips(_ version: AIMETEncodings.Version) throws {
    for granularity in [Granularity.perTensor, .perChannel(axis: 0), .perGroup(axis: 1, size: 16)] where !(version == .v0_6_1 && granularity != .perChannel(axis: 0) && granularity != .perTensor) {
      let sites = [Self.weight, Self.activation], original = Self.quantizers(weights: granularity)
      let file = try AIMETEncodings(sites: sites, quantizers: original, version: version)
      let read = try AIMETEncodings(json: try file.json(), source: "test")
      for site in sites {
        let entry = try #require(read.entries[site.name])
        let q = try AIMETEncodings.quantizer(entry, at: site)
        #expect(q == original[site.name])
      }
    }
  }

  /// 1.0.0's offsets are those of the unsigned grid, as aimet-onnx writes them.
  @Test func offsetsFollowAIMETsConvention() throws {
    let file = try AIMETEncodings(sites: [Self.weight, Self.activation], quantizers: Self.quantizers(weights: .perChannel(axis: 0)), version: .v1_0_0)
    let root = try #require(try JSONSerialization.jsonObject(with: file.json()) as? [String: Any])
    let w = try #require((root["param_encodings"] as? [[String: Any]])?.first)
    #expect(w["offset"] as? [Int] == [-128, -128] && w["is_sym"] as? Bool == true && w["enc_type"] as? String == "PER_CHANNEL")
    let x = try #require((root["activation_encodings"] as? [[String: Any]])?.first)
    #expect(x["offset"] as? [Int] == [-17] && x["is_sym"] as? Bool == false && x["bw"] as? Int == 8)
  }

  @Test func narrowGridsHaveNoAIMETForm() {
    let q = TensorQuantizer(grid: IntegerGrid(bits: 8, signed: true, narrow: true), symmetric: true, granularity: .perTensor,
                            params: [QuantParams(scale: 1, zeroPoint: 0)])
    #expect(throws: LowbitError.self) { try AIMETEncodings(sites: [Self.weight], quantizers: ["w": q], version: .v1_0_0) }
  }
}
