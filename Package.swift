// swift-tools-version:6.0
import Foundation
import PackageDescription

/// Debian's `libopenblas-serial-dev` (single-threaded OpenBLAS) for this machine's multiarch
/// triple, when installed; otherwise whatever `pkg-config openblas` names.
let openblasSerial: (include: String, lib: String)? = {
  for triple in ["x86_64-linux-gnu", "aarch64-linux-gnu"] {
    let lib = "/usr/lib/\(triple)/openblas-serial"
    if FileManager.default.fileExists(atPath: lib + "/libopenblas.so") {
      return ("/usr/include/\(triple)/openblas-serial", lib)
    }
  }
  return nil
}()

let package = Package(
  name: "lowbit",
  products: [
    .executable(name: "lowbit", targets: ["lowbit"]),
    .library(name: "LowbitCore", targets: ["LowbitCore"]),
    .library(name: "LowbitData", targets: ["LowbitData"]),
    .library(name: "LowbitQuant", targets: ["LowbitQuant"]),
    .library(name: "LowbitONNX", targets: ["LowbitONNX"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
  ],
  targets: [
    .systemLibrary(
      name: "CBLAS", pkgConfig: openblasSerial == nil ? "openblas" : nil,
      providers: [.apt(["libopenblas-serial-dev"])]),
    .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
    // OpenBLAS's single-threaded build: lowbit parallelizes around sgemm itself, and the pthread
    // build's idle workers spin (sched_yield) on the same 2 cores. The run path makes the loader
    // pick it over the alternatives-managed libopenblas.so.0.
    .target(
      name: "LowbitCore", dependencies: ["CBLAS"],
      swiftSettings: (openblasSerial.map { [.unsafeFlags(["-Xcc", "-I\($0.include)"])] } ?? []),
      linkerSettings: openblasSerial.map {
        [.unsafeFlags(["-L\($0.lib)", "-Xlinker", "-rpath", "-Xlinker", $0.lib])]
      } ?? []),
    .target(name: "LowbitData", dependencies: ["LowbitCore", "CZlib"]),
    .target(name: "LowbitQuant", dependencies: ["LowbitCore", "LowbitData"]),
    .target(
      name: "LowbitONNX",
      dependencies: ["LowbitCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
    .target(name: "LowbitReport", dependencies: ["LowbitCore"]),
    .target(
      name: "LowbitCLI",
      dependencies: [
        "LowbitCore", "LowbitData", "LowbitQuant", "LowbitONNX", "LowbitReport",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    .executableTarget(name: "lowbit", dependencies: ["LowbitCLI"]),
    .target(name: "LowbitTestSupport", dependencies: ["LowbitCore"], path: "Tests/LowbitTestSupport"),
    .testTarget(name: "LowbitCoreTests", dependencies: ["LowbitCore", "LowbitTestSupport"]),
    .testTarget(
      name: "LowbitDataTests", dependencies: ["LowbitData", "LowbitTestSupport"], exclude: ["Fixtures"]),
    .testTarget(name: "LowbitQuantTests", dependencies: ["LowbitQuant", "LowbitTestSupport"]),
    .testTarget(
      name: "LowbitONNXTests",
      dependencies: ["LowbitONNX", "LowbitData", "LowbitQuant", "LowbitTestSupport"]),
  ],
  swiftLanguageModes: [.v5]
)
