// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "lowbit",
  products: [
    .executable(name: "lowbit", targets: ["lowbit"]),
    .library(name: "LowbitCore", targets: ["LowbitCore"]),
    .library(name: "LowbitData", targets: ["LowbitData"]),
    .library(name: "LowbitQuant", targets: ["LowbitQuant"]),
    .library(name: "LowbitONNX", targets: ["LowbitONNX"]),
    .library(name: "LowbitTrain", targets: ["LowbitTrain"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
  ],
  targets: [
    .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"])]),
    .systemLibrary(name: "CJPEG", providers: [.apt(["libjpeg62-turbo-dev"])]),
    .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
    .target(name: "LowbitCore", dependencies: ["CBLAS"]),
    .target(name: "LowbitData", dependencies: ["LowbitCore", "CZlib", "CJPEG", "CPNG"]),
    .target(name: "LowbitQuant", dependencies: ["LowbitCore", "LowbitData", "LowbitTrain"]),
    .target(
      name: "LowbitONNX",
      dependencies: ["LowbitCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
    .target(name: "LowbitReport", dependencies: ["LowbitCore"]),
    .target(name: "LowbitTrain", dependencies: ["LowbitCore", "LowbitData"]),
    .target(name: "LowbitDistributed", dependencies: ["CMPI", "LowbitCore", "LowbitTrain"]),
    .target(
      name: "LowbitCLI",
      dependencies: [
        "LowbitCore", "LowbitData", "LowbitQuant", "LowbitONNX", "LowbitReport", "LowbitTrain", "LowbitDistributed",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    .executableTarget(name: "lowbit", dependencies: ["LowbitCLI"]),
    .target(name: "LowbitTestSupport", dependencies: ["LowbitCore"], path: "Tests/LowbitTestSupport"),
    .testTarget(name: "LowbitCoreTests", dependencies: ["LowbitCore", "LowbitTestSupport", "CBLAS"]),
    .testTarget(
      name: "LowbitDataTests", dependencies: ["LowbitData", "LowbitTestSupport"], exclude: ["Fixtures"]),
    .testTarget(
      name: "LowbitQuantTests",
      dependencies: ["LowbitQuant", "LowbitTrain", "LowbitONNX", "LowbitData", "LowbitTestSupport"]),
    .testTarget(
      name: "LowbitONNXTests",
      dependencies: ["LowbitONNX", "LowbitData", "LowbitQuant", "LowbitTestSupport"]),
    .testTarget(
      name: "LowbitTrainTests", dependencies: ["LowbitTrain", "LowbitONNX", "LowbitTestSupport"]),
    .testTarget(name: "LowbitDistributedTests", dependencies: ["LowbitDistributed", "LowbitTrain"]),
  ],
  swiftLanguageModes: [.v6]
)
