//! The same small memory as `tag` (16 KiB stack, one 64 KiB page): the two
//! steps parse the same flat config; `components/steps/tag/build.rs` says why it is
//! enough and what it saves per call.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=16384");
        println!("cargo:rustc-link-arg-cdylib=--initial-memory=65536");
    }
}
