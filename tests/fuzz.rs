//! A short fuzz run of every parser of outside input, as `./dev bench fuzz`
//! runs at length: mutated stored cases through each trigger's logic, the
//! signature checks, the journey parser, CEL compilation and evaluation and
//! template rendering; none may panic. Any input
//! kept in `tests/cases/fuzz/` by a longer run is replayed here too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dripline_tests::repo_root;

#[test]
fn no_parser_of_outside_input_panics_on_mutated_cases() {
    let reports = dripline_bench::fuzz::run(repo_root(), 3_000, 42).unwrap();
    assert!(reports.len() >= 10, "{reports:?}");
    for report in &reports {
        assert_eq!(report.inputs, 3_000);
        assert_eq!(report.panics, 0, "{}: {:?}", report.name, report.crashes);
    }
}
