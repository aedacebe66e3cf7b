//! Lifecycle runtime benchmark.
//!
//! 1. Feed: a protocol owns N routes (100k, 1M); a new protocol is added by
//!    a commit and fed the whole table. Reported: routes/s from commit to
//!    `up`, the longest single loop step (one feed chunk, delivery
//!    included), and the worst latency of a probe that, during the feed,
//!    keeps restarting a tiny protocol (a command that needs the loop to run
//!    its shutdown hook), i.e. how long other work waited behind the feed,
//!    next to the same probe's worst latency with the loop idle (the
//!    machine's own wake-up and scheduling noise). Then the owner is
//!    disabled: the time until the new protocol has heard every withdrawal,
//!    and the longest flush step.
//! 2. Commit: a config of P protocols (10, 1000) where one protocol's own
//!    config changes each time (reconfigured in place, which includes the
//!    wait for the loop to run the reconfigure hook), and the same config
//!    again (nothing changes). Reported: time per commit, next to a full
//!    parse of the config (what every commit paid before unchanged
//!    protocols were recognised by their text). Only the changed protocol's
//!    text is parsed; the 999 others cost a byte comparison.
//! 3. Export churn: one protocol changes the best route of K prefixes over
//!    and over (M changes) while two others listen. Reported: changes/s,
//!    exports delivered, and the most exports pending at once, which
//!    coalescing per (listener, prefix) bounds by K x listeners.
//!
//!   cargo build --release --example lifecycle_bench
//!   target/release/examples/lifecycle_bench [--sizes 100000,1000000] [--commits 200]

use meshring::lifecycle::{parse_config, Api, Export, Kind, Options, Prefix, ProtoConfig, ProtoState, Runtime};
use meshring::sync::Wait;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Imports `routes` host prefixes on start; counts exports.
struct Bench {
    routes: usize,
    exports: AtomicU64,
}

impl Kind for Bench {
    fn start(&self, api: &Api, proto: &str, _config: &ProtoConfig) -> ProtoState {
        let attrs: Arc<str> = r#"{"via":"bench"}"#.into();
        for i in 0..self.routes {
            let text = format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            let prefix = Prefix::parse(&text).expect("valid");
            api.import_parsed(proto, prefix, None, attrs.clone()).expect("import");
        }
        ProtoState::Up
    }
    fn shutdown(&self, _api: &Api, _proto: &str) -> ProtoState {
        ProtoState::Down
    }
    fn reconfigure(&self, _api: &Api, _proto: &str, _old: &ProtoConfig, _new: &ProtoConfig) -> bool {
        true
    }
    fn export(&self, _api: &Api, _proto: &str, route: &Export<'_>) {
        std::hint::black_box(route.attrs.len());
        self.exports.fetch_add(1, Relaxed);
    }
}

fn kind(routes: usize) -> Arc<Bench> {
    Arc::new(Bench { routes, exports: AtomicU64::new(0) })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The probe protocol lives in a table of its own, so restarting it costs
/// two hooks and no feed.
fn feed_config(with_sink: bool) -> String {
    let sink = if with_sink { r#",{"name":"sink","kind":"sink"}"# } else { "" };
    format!(r#"{{"tables":["master","probe"],"protocols":[{{"name":"src","kind":"src"}},{{"name":"tiny","kind":"tiny","table":"probe"}}{sink}]}}"#)
}

fn feed(n: usize) -> Feed {
    let rt = Runtime::new(Options::default()).expect("runtime");
    let src = kind(n);
    let sink = kind(0);
    rt.register_kind("src", src.clone()).unwrap();
    rt.register_kind("sink", sink.clone()).unwrap();
    rt.register_kind("tiny", kind(0)).unwrap();
    rt.commit(&feed_config(false), false).unwrap();
    rt.wait_idle(Wait::Forever).unwrap();
    rt.reset_stats();
    // The probe: restart "tiny" over and over (first for 100 ms with the
    // loop idle, as the baseline of this machine's wake-up latency; then
    // while the feed runs).
    let probe = |stop: Arc<AtomicBool>| {
        let api = rt.api().clone();
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !stop.load(Relaxed) {
                let t = Instant::now();
                api.restart("tiny").unwrap();
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_micros(200));
            }
            worst
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let idle_probe = probe(stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Relaxed);
    let idle_worst = idle_probe.join().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = probe(stop.clone());
    let t = Instant::now();
    rt.commit(&feed_config(true), false).unwrap();
    while sink.exports.load(Relaxed) < n as u64 {
        std::thread::sleep(Duration::from_micros(100));
    }
    let took = t.elapsed();
    stop.store(true, Relaxed);
    let worst_probe = probe.join().unwrap();
    rt.wait_idle(Wait::Forever).unwrap();
    let step = rt.stats().max_step;
    // Flush: the source goes down; every route is withdrawn from the sink.
    rt.reset_stats();
    let t = Instant::now();
    rt.disable("src").unwrap();
    while sink.exports.load(Relaxed) < 2 * n as u64 {
        std::thread::sleep(Duration::from_micros(100));
    }
    let flush = t.elapsed();
    rt.wait_idle(Wait::Forever).unwrap();
    let flush_step = rt.stats().max_step;
    Feed { rate: n as f64 / took.as_secs_f64(), took, step, worst_probe, idle_worst, flush, flush_step }
}

struct Feed {
    rate: f64,
    took: Duration,
    step: Duration,
    worst_probe: Duration,
    idle_worst: Duration,
    flush: Duration,
    flush_step: Duration,
}

fn config(p: usize, changed: usize, value: usize) -> String {
    let mut s = String::from(r#"{"protocols":["#);
    for i in 0..p {
        if i > 0 {
            s.push(',');
        }
        let v = if i == changed { value } else { 0 };
        s.push_str(&format!(r#"{{"name":"p{i}","kind":"k","config":{{"v":{v}}}}}"#));
    }
    s.push_str("]}");
    s
}

/// The best (least disturbed) per-call average of `ROUNDS` rounds of
/// `reps / ROUNDS` calls: the machine is shared, so the minimum is the
/// figure that describes the code.
fn per_call(reps: usize, mut f: impl FnMut(usize)) -> Duration {
    const ROUNDS: usize = 5;
    let per_round = (reps / ROUNDS).max(1);
    let mut best = Duration::MAX;
    for round in 0..ROUNDS {
        let t = Instant::now();
        for i in 0..per_round {
            f(round * per_round + i);
        }
        best = best.min(t.elapsed() / per_round as u32);
    }
    best
}

fn commit(p: usize, reps: usize) -> (Duration, Duration, Duration) {
    let rt = Runtime::new(Options::default()).expect("runtime");
    rt.register_kind("k", kind(0)).unwrap();
    rt.commit(&config(p, usize::MAX, 0), false).unwrap();
    rt.wait_idle(Wait::Forever).unwrap();
    let configs: Vec<String> = (0..reps).map(|r| config(p, p / 2, r + 1)).collect();
    let changed = per_call(reps, |i| rt.commit(&configs[i], false).unwrap());
    let same = configs.last().unwrap().clone();
    let unchanged = per_call(reps, |_| rt.commit(&same, false).unwrap());
    let known = |k: &str| (k == "k").then(|| Arc::<str>::from("k"));
    let parse = per_call(reps, |i| {
        std::hint::black_box(parse_config(&configs[i], &known).unwrap());
    });
    (changed, unchanged, parse)
}

/// `changes` best-route changes spread over `prefixes` prefixes, two listeners.
fn churn(changes: usize, prefixes: usize) -> (Duration, u64, usize) {
    let rt = Runtime::new(Options::default()).expect("runtime");
    let (l1, l2) = (kind(0), kind(0));
    rt.register_kind("src", kind(0)).unwrap();
    rt.register_kind("l1", l1.clone()).unwrap();
    rt.register_kind("l2", l2.clone()).unwrap();
    rt.commit(r#"{"protocols":[{"name":"src","kind":"src"},{"name":"l1","kind":"l1"},{"name":"l2","kind":"l2"}]}"#, false).unwrap();
    rt.wait_idle(Wait::Forever).unwrap();
    let list: Vec<Prefix> =
        (0..prefixes).map(|i| Prefix::parse(&format!("10.{}.{}.0/24", (i >> 8) & 255, i & 255)).expect("valid")).collect();
    let attrs: Arc<str> = r#"{"via":"churn"}"#.into();
    rt.reset_stats();
    let t = Instant::now();
    for i in 0..changes {
        // Alternating preference: every import changes the best route.
        let preference = 100 + ((i / prefixes) % 2) as u32;
        rt.import_parsed("src", list[i % prefixes], Some(preference), attrs.clone()).unwrap();
    }
    rt.wait_idle(Wait::Forever).unwrap();
    let took = t.elapsed();
    let delivered = l1.exports.load(Relaxed) + l2.exports.load(Relaxed);
    (took, delivered, rt.stats().max_pending_exports)
}

fn main() {
    let mut sizes = vec![100_000usize, 1_000_000];
    let mut reps = 200usize;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--sizes" => {
                sizes = args[i + 1].split(',').map(|s| s.parse().expect("size")).collect();
                i += 1;
            }
            "--commits" => {
                reps = args[i + 1].parse().expect("count");
                i += 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    println!("lifecycle runtime: feed of a table to a new protocol (feed_chunk 2048)");
    println!(
        "{:>10}  {:>11}  {:>10}  {:>12}  {:>18}  {:>16}  {:>11}  {:>17}",
        "routes", "feed time", "routes/s", "longest step", "probe during feed", "probe loop idle", "flush time", "longest flush step"
    );
    for n in sizes {
        let f = feed(n);
        println!(
            "{:>10}  {:>11}  {:>10.0}  {:>12}  {:>18}  {:>16}  {:>11}  {:>17}",
            n,
            ms(f.took),
            f.rate,
            ms(f.step),
            ms(f.worst_probe),
            ms(f.idle_worst),
            ms(f.flush),
            ms(f.flush_step)
        );
    }
    println!("(probe: the worst wait of a restart command for a protocol in another table, issued every 0.2 ms)");
    println!();
    println!("lifecycle runtime: commit cost ({reps} commits each)");
    println!("{:>10}  {:>24}  {:>17}  {:>30}", "protocols", "one changed (in place)", "nothing changed", "full parse of the config (ref)");
    let us = |d: Duration| format!("{:.1} us", d.as_secs_f64() * 1e6);
    let mut per = Vec::new();
    for p in [10usize, 1000] {
        let (changed, unchanged, parse) = commit(p, reps);
        println!("{:>10}  {:>24}  {:>17}  {:>30}", p, us(changed), us(unchanged), us(parse));
        per.push(changed);
    }
    println!(
        "(per unchanged protocol: {:.3} us = (1000-protocol - 10-protocol one-changed commit) / 990)",
        per[1].saturating_sub(per[0]).as_secs_f64() * 1e6 / 990.0
    );
    println!();
    let (changes, prefixes) = (1_000_000usize, 1000usize);
    println!("lifecycle runtime: export churn ({changes} best-route changes to {prefixes} prefixes, 2 listeners)");
    println!("{:>12}  {:>12}  {:>18}  {:>22}", "time", "changes/s", "exports delivered", "most pending exports");
    let (took, delivered, peak) = churn(changes, prefixes);
    println!("{:>12}  {:>12.0}  {:>18}  {:>22}", ms(took), changes as f64 / took.as_secs_f64(), delivered, peak);
    println!("(pending exports are coalesced per listener and prefix: at most {} here)", prefixes * 2);
}
