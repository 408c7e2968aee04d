//! The crash drill in CI: a child `dripline process` is killed with SIGKILL at
//! random points while it works through a stream of events and timers and
//! delivers their messages to a provider on loopback, then restarted; the result must equal a run that was never killed. Several
//! drills with different kill moments; `./dev bench crash --kills 100` runs
//! one at length.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dripline_bench::crash::{Drill, DrillReport, run};
use dripline_tests::{components_dir, dripline_binary};

#[test]
fn a_process_killed_at_random_points_loses_nothing_misses_nothing_and_repeats_nothing() {
    let mut during_delivery = 0;
    for seed in [1, 2, 3] {
        let work = tempfile::tempdir().unwrap();
        let report = run(&Drill {
            binary: dripline_binary(),
            components: components_dir().to_path_buf(),
            work_dir: work.path().to_path_buf(),
            contacts: 60,
            kills: 10,
            seed,
            redis: None,
            workers: 1,
        })
        .unwrap();
        assert!(report.kills > 0, "no kill landed mid-run: {report:?}");
        during_delivery += report.kills_during_delivery;
        assert_eq!(
            DrillReport {
                kills: report.kills,
                runs: report.runs,
                kills_during_delivery: report.kills_during_delivery,
                redelivered: report.redelivered,
                ..DrillReport::default()
            },
            report,
            "seed {seed}"
        );
    }
    assert!(during_delivery > 0, "no kill landed during a delivery");
}

#[test]
fn four_workers_on_one_redis_killed_at_random_lose_nothing_miss_nothing_and_repeat_nothing() {
    let work = tempfile::tempdir().unwrap();
    let redis = dripline_store::redis::RedisServer::start(work.path()).unwrap();
    let report = run(&Drill {
        binary: dripline_binary(),
        components: components_dir().to_path_buf(),
        work_dir: work.path().to_path_buf(),
        contacts: 60,
        kills: 12,
        seed: 5,
        redis: Some(redis.url(0)),
        workers: 4,
    })
    .unwrap();
    assert!(report.kills > 0, "no kill landed mid-run: {report:?}");
    assert_eq!(
        (report.lost, report.duplicated, report.missed),
        (0, 0, 0),
        "{report:?}"
    );
}
