//! Builds the guest components (`components/`, a workspace of its own) for
//! `wasm32-wasip2` before the tests compile, so every test runs the components
//! as they are in the tree, never a stale or hand-built `.wasm`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // A target directory of its own: the outer cargo holds a lock on `target`.
    let wasm_target = target.join("wasm-components");

    // Relative to this package, not absolute: the target directory is shared
    // between clones (`./dev` keeps it in ~/.cache), and an absolute path
    // would have a fresh clone's build trust the last clone's components.
    println!("cargo:rerun-if-changed=../components");
    println!("cargo:rerun-if-changed=../wit");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join("components/Cargo.toml"))
        .arg("--target-dir")
        .arg(&wasm_target)
        // Cargo reads `.cargo/config.toml` from the working directory: the
        // guests' link settings live in `components/.cargo/config.toml`.
        .current_dir(root.join("components"))
        // The outer build's flags are for the host, not for the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let hint = if stderr.contains("wasm32-wasip2")
                && stderr.contains("target may not be installed")
            {
                "\nhint: run `rustup target add wasm32-wasip2` (./dev does it for you)"
            } else {
                ""
            };
            eprintln!("building the components failed:\n{stderr}{hint}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("could not run cargo to build the components: {e}");
            std::process::exit(1);
        }
    }
    let out = wasm_target.join("wasm32-wasip2/release");
    println!("cargo:rustc-env=DRIPLINE_TEST_COMPONENTS={}", out.display());
    println!(
        "cargo:rustc-env=DRIPLINE_TEST_CACHE={}",
        wasm_target.join("cwasm-cache").display()
    );
}
