//! The console's built files are embedded; a new build of them (`./dev
//! build`) must rebuild this crate, files added or removed included.

fn main() {
    println!("cargo:rerun-if-changed=../../console/dist");
}
