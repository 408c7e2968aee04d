//! Liquid's parser and filters carry about 480 KiB of static data (pest
//! tables, regex, Unicode segmentation), more than the 256 KiB initial memory
//! that `components/.cargo/config.toml` gives every guest. A later
//! `--initial-memory` wins, so this raises it for this component alone, with
//! room for the heap a render needs.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--initial-memory=1048576");
    }
}
