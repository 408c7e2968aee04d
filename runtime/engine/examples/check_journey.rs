//! Prints a journey file's errors, or its JSON form: `cargo run --example check_journey -- FILE`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    for path in std::env::args().skip(1) {
        if path == "--schema" {
            println!("{}", dripline_engine::json_schema());
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        match dripline_engine::parse_journey(&path, &text) {
            Ok(journey) => println!("{path}: ok, {} steps", journey.steps.len()),
            Err(errors) => {
                for error in errors {
                    println!("{error}");
                }
            }
        }
    }
    Ok(())
}
