fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build-script binary may be reused from another checkout sharing the
    // target directory, so a compile-time `env!` path could point at that other checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).join("../../proto");
    let files = [
        root.join("prometheus/remote.proto"),
        root.join("prometheus/read.proto"),
        root.join("prometheus/write_v2.proto"),
        root.join("hestia/ingester.proto"),
        root.join("hestia/control.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        .bytes(".hestia.ingester.Chunk.data")
        .bytes(".hestia.ingester.PushRequestEncoded.timeseries")
        .compile_protos(&files, &[root])?;
    Ok(())
}
