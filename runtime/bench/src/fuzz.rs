//! `./dev bench fuzz --inputs N`: every parser that reads what outsiders
//! send, fed mutated copies of the stored cases. The targets: each trigger
//! (Shopify, Typeform, Tally, HTML forms, the track API) as its component's
//! logic natively, each signature check apart, the journey-file parser and
//! validator, CEL compilation, CEL evaluation against a contact and an event,
//! and template rendering (the `send` step's logic natively, for email and
//! SMS). An input may be refused (a typed error is the right answer to
//! garbage); it must never panic or hang.
//!
//! Mutation fuzzing without coverage feedback: each input is a corpus entry
//! with one to four random edits (a bit flipped, a byte replaced by one that
//! matters to JSON, forms or TOML, bytes inserted, a run deleted or
//! repeated, the tail cut). The generator is seeded, so a run repeats
//! exactly; an input that panics is written to `tests/cases/fuzz/<target>/`
//! so it becomes a regression case, and is named in the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canonical::Request;

/// Runs one input through a target.
type RunOne = Box<dyn Fn(&[u8])>;

/// One thing to fuzz: its stored inputs and how to run one.
struct Target {
    name: &'static str,
    corpus: Vec<Vec<u8>>,
    run: RunOne,
}

/// What one target's run found.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetReport {
    /// The target's name.
    pub name: &'static str,
    /// Inputs tried.
    pub inputs: u64,
    /// Inputs that panicked (0 is the only acceptable figure).
    pub panics: u64,
    /// The slowest input.
    pub slowest: Duration,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Where the panicking inputs were written.
    pub crashes: Vec<PathBuf>,
}

/// Runs `inputs` mutated inputs through every target, from `seed`.
pub fn run(repo: &Path, inputs: u64, seed: u64) -> anyhow::Result<Vec<TargetReport>> {
    let targets = targets(repo)?;
    // Panics are caught and counted; their messages would drown the report.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let reports = targets
        .iter()
        .map(|target| fuzz(repo, target, inputs, seed))
        .collect();
    std::panic::set_hook(hook);
    reports
}

fn fuzz(repo: &Path, target: &Target, inputs: u64, seed: u64) -> anyhow::Result<TargetReport> {
    anyhow::ensure!(!target.corpus.is_empty(), "{}: no corpus", target.name);
    let mut rng = Rng::new(seed ^ hash(target.name.as_bytes()));
    let mut report = TargetReport {
        name: target.name,
        inputs: 0,
        panics: 0,
        slowest: Duration::ZERO,
        elapsed: Duration::ZERO,
        crashes: Vec::new(),
    };
    let started = Instant::now();
    for i in 0..inputs {
        let base = &target.corpus[(i as usize) % target.corpus.len()];
        // Every corpus entry also goes in as it is, once.
        let input = if i < target.corpus.len() as u64 {
            base.clone()
        } else {
            mutate(base, &mut rng)
        };
        let one = Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(&input)));
        report.slowest = report.slowest.max(one.elapsed());
        report.inputs += 1;
        if outcome.is_err() {
            report.panics += 1;
            if report.crashes.len() < 5 {
                report.crashes.push(keep_crash(repo, target.name, &input)?);
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Writes a panicking input where the test suite will find it.
fn keep_crash(repo: &Path, target: &str, input: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = repo.join("tests/cases/fuzz").join(target);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("crash-{:016x}.bin", hash(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

fn targets(repo: &Path) -> anyhow::Result<Vec<Target>> {
    let cases = repo.join("tests/cases/webhooks");
    let mut targets = Vec::new();
    for (source, default_path) in [
        ("shopify", "/webhooks/shopify"),
        ("typeform", "/forms/typeform"),
        ("tally", "/forms/tally"),
        ("html", "/forms/contact"),
        ("track", "/v1/track"),
    ] {
        let requests = stored_requests(&cases.join(source), default_path)?;
        let handle: fn(&Request<'_>) -> Result<Vec<canonical::Event>, canonical::TriggerError> =
            match source {
                "shopify" => shopify::handle,
                "track" => track::handle,
                _ => forms::handle,
            };
        // The corpus is the bodies; each input goes with the path and
        // headers of a stored case chosen by its hash, so headers and bodies
        // meet in combinations no case has.
        let bodies: Vec<Vec<u8>> = requests.iter().map(|r| r.2.clone()).collect();
        let requests = requests.clone();
        targets.push(Target {
            name: source,
            corpus: bodies,
            run: Box::new(move |body| {
                let (path, headers, _) = &requests[hash(body) as usize % requests.len()];
                let request = Request {
                    path,
                    headers,
                    body,
                    received_at: 1_764_000_000_000,
                };
                let _ = handle(&request);
            }),
        });
    }
    let secret = b"a shared secret".to_vec();
    let signed = webhook_auth::sign(&secret, b"{\"id\":1}").into_bytes();
    targets.push(Target {
        name: "signatures",
        corpus: vec![
            signed.clone(),
            [b"sha256=".as_slice(), &signed].concat(),
            b"t=1700000000,v1=abcdef".to_vec(),
            b"Basic d2tfMTIzOg==".to_vec(),
        ],
        run: Box::new(move |header| {
            let header = String::from_utf8_lossy(header);
            let body = b"{\"id\":1}";
            let _ = webhook_auth::verify_shopify(&secret, body, Some(&header));
            let _ = webhook_auth::verify_typeform(&secret, body, Some(&header));
            let _ = webhook_auth::verify_tally(&secret, body, Some(&header));
            let _ = webhook_auth::verify_write_key("wk_123", Some(&header));
        }),
    });
    let mut journeys = Vec::new();
    for dir in [repo.join("journeys"), repo.join("tests/cases/journeys")] {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "toml") {
                journeys.push(std::fs::read(&path)?);
            }
        }
    }
    let conditions: Vec<Vec<u8>> = journeys
        .iter()
        .flat_map(|text| quoted_after(text, &["filter = ", "condition = ", "when = "]))
        .collect();
    targets.push(Target {
        name: "journeys",
        corpus: journeys,
        run: Box::new(|text| {
            let _ = dripline_engine::parse_journey("fuzz.toml", &String::from_utf8_lossy(text));
        }),
    });
    targets.push(Target {
        name: "cel",
        corpus: conditions.clone(),
        run: Box::new(|source| {
            let _ = dripline_engine::CelExpr::new(String::from_utf8_lossy(source));
        }),
    });
    let (event, contact) = sample_event_and_contact(repo)?;
    targets.push(Target {
        name: "cel-eval",
        corpus: conditions,
        run: Box::new(move |source| {
            if let Ok(expr) = dripline_engine::CelExpr::new(String::from_utf8_lossy(source)) {
                let _ = expr.test(&event, &contact);
            }
        }),
    });
    let mut templates = Vec::new();
    for dir in [
        repo.join("templates"),
        repo.join("tests/cases/scenarios/templates"),
    ] {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "liquid") {
                templates.push(std::fs::read(&path)?);
            }
        }
    }
    let context = sample_send_context(repo)?;
    targets.push(Target {
        name: "templates",
        corpus: templates,
        run: Box::new(move |source| {
            let source = String::from_utf8_lossy(source);
            // The same input as an email and as an SMS: the SMS checks differ.
            for channel in ["email", "sms"] {
                let config = serde_json::json!({
                    "channel": channel,
                    "template": "fuzz",
                    "template_files": { format!("fuzz.{channel}.liquid"): source },
                });
                let mut context = context.clone();
                context.config = config.to_string();
                let _ = send::check_config(&context.config);
                let _ = send::compose(&context);
            }
        }),
    });
    // Inputs that once panicked stay in the corpus: each run replays them.
    for target in &mut targets {
        let kept = repo.join("tests/cases/fuzz").join(target.name);
        if let Ok(entries) = std::fs::read_dir(&kept) {
            for entry in entries.flatten() {
                target.corpus.push(std::fs::read(entry.path())?);
            }
        }
    }
    Ok(targets)
}

/// The event and contact conditions are evaluated against: the stored
/// Shopify checkout as its trigger turns it into an event.
fn sample_event_and_contact(
    repo: &Path,
) -> anyhow::Result<(dripline_engine::Event, dripline_engine::ContactView)> {
    let cases = repo.join("tests/cases/webhooks/shopify");
    let requests = stored_requests(&cases, "/webhooks/shopify")?;
    let (path, headers, body) = requests
        .iter()
        .find(|(_, _, body)| body.windows(9).any(|w| w == b"line_item"))
        .or(requests.first())
        .ok_or_else(|| anyhow::anyhow!("no stored Shopify case"))?;
    let request = Request {
        path,
        headers,
        body,
        received_at: 1_764_000_000_000,
    };
    let events = shopify::handle(&request).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let event = events
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the stored Shopify case made no event"))?;
    let contact = serde_json::from_value(serde_json::json!({
        "id": "c1",
        "identities": event.identities,
        "attributes": { "first_name": "Li", "orders": 3, "vip": true },
        "tags": ["customer", "newsletter"],
        "score": 42,
        "time_zone": "Asia/Shanghai",
    }))?;
    Ok((event, contact))
}

/// What the `send` step knows in a run, for a checkout's contact.
fn sample_send_context(repo: &Path) -> anyhow::Result<send::Context> {
    let (event, _) = sample_event_and_contact(repo)?;
    Ok(send::Context {
        journey: "abandoned-checkout".into(),
        journey_version: 1,
        enrollment_id: "e1".into(),
        step_id: "reminder".into(),
        attempt: 1,
        contact: send::Contact {
            id: "c1".into(),
            email: event.identities.email.clone(),
            phone: event.identities.phone.clone(),
            attributes: r#"{"first_name":"Li","vip":true}"#.into(),
            tags: vec!["customer".into()],
            score: 42,
            time_zone: Some("Asia/Shanghai".into()),
            ..send::Contact::default()
        },
        trigger: send::Trigger {
            id: event.id.clone(),
            source: event.source.clone(),
            name: event.name.clone(),
            email: event.identities.email.clone(),
            phone: event.identities.phone.clone(),
            properties: serde_json::to_string(&event.properties)?,
            occurred_at: event.occurred_at,
            ..send::Trigger::default()
        },
        data: "{}".into(),
        config: "{}".into(),
        now: 1_764_000_000_000,
    })
}

/// `(path, headers, body)` of every stored case of one source.
type StoredRequest = (String, Vec<(String, String)>, Vec<u8>);

fn stored_requests(dir: &Path, default_path: &str) -> anyhow::Result<Vec<StoredRequest>> {
    let mut found = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    for spec_path in entries {
        let body = std::fs::read(spec_path.with_extension("json"))
            .or_else(|_| std::fs::read(spec_path.with_extension("body")))?;
        let spec: toml::Table = std::fs::read_to_string(&spec_path)?.parse()?;
        let path = spec
            .get("path")
            .and_then(|p| p.as_str())
            .unwrap_or(default_path)
            .to_string();
        let headers = spec
            .get("headers")
            .and_then(|h| h.as_table())
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        (
                            k.to_ascii_lowercase(),
                            v.as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.push((path, headers, body));
    }
    Ok(found)
}

/// The quoted strings after each of `keys` in a TOML text: the journeys'
/// CEL expressions.
fn quoted_after(text: &[u8], keys: &[&str]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(text);
    let mut found = Vec::new();
    for key in keys {
        for (at, _) in text.match_indices(key) {
            let rest = &text[at + key.len()..];
            if let Some(rest) = rest.strip_prefix('"')
                && let Some(end) = rest.find('"')
            {
                found.push(rest.as_bytes()[..end].to_vec());
            }
        }
    }
    found
}

/// One to four random edits of `base`.
fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    const MEANINGFUL: &[u8] = b"\"{}[],:0-9e.\\/%&=+\n\r\t \x00\xff\xc3";
    let mut out = base.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = MEANINGFUL[rng.below(MEANINGFUL.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let byte = rng.next() as u8;
                out.insert(i, byte);
            }
            3 if len > 1 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                out.drain(start..end);
            }
            4 if len > 1 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let chunk = out[start..end].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
            5 if len > 0 => out.truncate(rng.below(len)),
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, MEANINGFUL[rng.below(MEANINGFUL.len())]);
            }
        }
    }
    out
}

/// xorshift64*: small, seeded, and good enough to choose edits.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }
}

/// FNV-1a: a stable name for an input.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}
