// swift-tools-version:6.0
// Coverage-guided fuzz targets for lowbit's readers (libFuzzer): see tools/fuzz.py.
import PackageDescription

let package = Package(
  name: "lowbit-fuzz",
  dependencies: [.package(name: "lowbit", path: "..")],
  targets: [
    .executableTarget(
      name: "lowbit-fuzz",
      dependencies: [
        .product(name: "LowbitCore", package: "lowbit"), .product(name: "LowbitData", package: "lowbit"),
        .product(name: "LowbitONNX", package: "lowbit"), .product(name: "LowbitQuant", package: "lowbit"),
        .product(name: "LowbitTrain", package: "lowbit"),
      ],
      swiftSettings: [.unsafeFlags(["-parse-as-library"])])
  ],
  swiftLanguageModes: [.v5]
)
