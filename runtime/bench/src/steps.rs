//! `./dev bench steps`: what running a step in the sandbox costs. It runs
//! the `tag` step through the host in a fresh instance per call (what the
//! runtime does), in one reused instance (the call alone), and the same logic
//! natively, and prints medians and ratios measured in the same run, since the
//! machine it runs on is shared and noisy.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};

use dripline_sandbox::bindings::{Contact, Event, Identities, Outcome, StepContext};
use dripline_sandbox::{AcceptAll, Effect, Messenger, Sandbox, SandboxConfig, StepPlugin};

/// The idempotency key of the benchmark's step run, as the engine would make
/// it for a first visit and first attempt.
pub const SAMPLE_KEY: &str = "e-bench/tag/1/0";

/// Runs the step benchmark and prints `name: value unit` lines.
pub fn steps(components: &Path, iterations: usize) -> anyhow::Result<()> {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default())?);
    let path = components.join("tag.wasm");
    let component = sandbox
        .compile_file("tag", &path)
        .with_context(|| format!("loading {}", path.display()))?;
    let plugin = StepPlugin::new(sandbox.clone(), "tag", &component)?;
    let context = sample_context(r#"{"tag":"vip"}"#);
    let messenger: Arc<dyn Messenger> = Arc::new(AcceptAll);

    // One checked run first, so a broken plugin fails loudly instead of timing errors.
    let run = plugin.run(&context, SAMPLE_KEY, messenger.clone())?;
    if !matches!(run.result, Ok(Outcome::Continue)) || run.effects != [Effect::AddTag("vip".into())]
    {
        bail!(
            "the tag step answered {:?} with {:?}",
            run.result,
            run.effects
        );
    }

    let fresh = median_ns(iterations, 10, || {
        let run = plugin.run(&context, SAMPLE_KEY, messenger.clone())?;
        Ok(std::hint::black_box(run.effects.len()))
    })?;
    let mut instance = plugin.instantiate(&context, SAMPLE_KEY, messenger.clone())?;
    let reused = median_ns(iterations, 100, || {
        Ok(std::hint::black_box(instance.run(&context)?.effects.len()))
    })?;
    let native = median_ns(iterations, 1000, || {
        // What the component does, without the sandbox: parse the config, record the effects.
        let (add, remove) =
            tag::plan(std::hint::black_box(&context.config)).map_err(anyhow::Error::msg)?;
        let effects: Vec<Effect> = add
            .into_iter()
            .map(Effect::AddTag)
            .chain(remove.into_iter().map(Effect::RemoveTag))
            .collect();
        Ok(std::hint::black_box(effects.len()))
    })?;

    if std::env::var_os("DRIPLINE_BENCH_PHASES").is_some() {
        let store_only = median_ns(iterations, 10, || {
            let store = sandbox.store(());
            drop(std::hint::black_box(store));
            Ok(0)
        })?;
        let instantiate_only = median_ns(iterations, 10, || {
            let instance = plugin.instantiate(&context, SAMPLE_KEY, messenger.clone())?;
            drop(std::hint::black_box(instance));
            Ok(0)
        })?;
        println!("phase_store_new_drop: {:.2} µs", store_only / 1e3);
        println!("phase_instantiate_drop: {:.2} µs", instantiate_only / 1e3);
    }
    println!("iterations: {iterations} calls");
    println!("fresh_instance_median: {:.2} µs", fresh / 1e3);
    println!("reused_instance_median: {:.2} µs", reused / 1e3);
    println!("native_median: {:.3} µs", native / 1e3);
    println!("fresh_over_native: {:.1} x", fresh / native);
    println!("reused_over_native: {:.1} x", reused / native);
    println!("fresh_over_reused: {:.1} x", fresh / reused);
    Ok(())
}

/// The median time of one call, in ns, over `iterations` calls timed in batches
/// of `batch` (so that the clock's own cost does not swamp sub-µs calls).
fn median_ns(
    iterations: usize,
    batch: usize,
    mut call: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<f64> {
    let samples = (iterations / batch).max(5);
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..batch {
            call()?;
        }
        times.push(start.elapsed().as_nanos() as f64 / batch as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// A contact and a trigger event shaped like a real abandoned checkout's.
pub fn sample_context(config: &str) -> StepContext {
    let identities = Identities {
        email: Some("li.wei@example.com".into()),
        phone: Some("+8613800138000".into()),
        external_ids: vec![("shopify".into(), "7385439482".into())],
    };
    StepContext {
        journey: "abandoned-checkout".into(),
        journey_version: 1,
        enrollment_id: "enr-0001".into(),
        step_id: "tag-cart".into(),
        attempt: 1,
        contact: Contact {
            id: "c-0001".into(),
            identities: identities.clone(),
            attributes: r#"{"first_name":"Li","orders_count":0}"#.into(),
            tags: vec!["newsletter".into()],
            score: 3,
            consent: vec![],
            time_zone: Some("Asia/Shanghai".into()),
        },
        trigger_event: Event {
            id: "shopify-1".into(),
            source: "shopify".into(),
            name: "checkout.created".into(),
            identities,
            properties: r#"{"token":"abc123","total_price":"219.00","currency":"CNY"}"#.into(),
            occurred_at: 1_763_800_000_000,
            received_at: 1_763_800_000_500,
        },
        data: "{}".into(),
        config: config.into(),
        now: 1_763_800_000_500,
    }
}
