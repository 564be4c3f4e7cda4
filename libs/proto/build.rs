fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("prometheus/remote.proto"),
        root.join("hestia/ingester.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        .bytes(".hestia.ingester.Chunk.data")
        .compile_protos(&files, &[root])?;
    Ok(())
}
