//! `tag` runs in a fresh instance for every contact, so what dominates its cost
//! is the sandbox's per-instance work, and part of that grows with the size of
//! the guest's linear memory: on every drop the pooling allocator memsets the
//! memory's resident pages (up to its keep-resident size) back to their initial
//! contents. The shared defaults in `components/.cargo/config.toml` (64 KiB
//! stack, 256 KiB initial memory) make that 256 KiB per call. `tag` needs far
//! less, so it gets one 64 KiB wasm page: a 16 KiB stack, its ~20 KiB of static
//! data, and ~28 KiB of heap. Measured with `./dev bench steps` on a 2-core
//! machine: fresh-instance calls drop from ~20 µs to ~15-17 µs (median, quiet).
//!
//! Why 16 KiB of stack is enough: `plan` parses a flat struct of strings with
//! serde_json, which does not recurse into values it refuses (unknown fields are
//! denied, wrong types are reported at the first token), so the stack depth does
//! not depend on the config. A config larger than the heap is still accepted:
//! wasi-libc's malloc grows memory past the initial page as it needs to. If the
//! stack were ever exhausted the guest traps (its stack sits below its data, so
//! an overflow leaves linear memory) and the host reports the trap.
//!
//! A later `--initial-memory` / `-zstack-size` wins over the workspace's, so
//! these apply to this component alone.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=16384");
        println!("cargo:rustc-link-arg-cdylib=--initial-memory=65536");
    }
}
