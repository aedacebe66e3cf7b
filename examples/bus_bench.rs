//! Notify bus benchmark (the BenchmarkGiantTailnet equivalent): the cost of
//! one peer delta (one peer added + one removed, one `apply`) in stores of
//! N = 10k .. 1M peers, with
//!   (a) no watcher,
//!   (b) one PeerChanges watcher that reads every message (full nodes),
//!   (c) 16 watchers over 3 classes (PeerChanges, PeerPatches,
//!       PeerChanges|EngineUpdates), all reading every message,
//! plus heap bytes allocated per delta (a counting global allocator) and
//! the process RSS. Each N runs in a child process of its own, so the RSS
//! of one store is not inflated by the previous one.
//!
//!   cargo build --release --example bus_bench
//!   target/release/examples/bus_bench [--deltas M] [--reps R] [--sizes 10000,50000,...]
//!
//! A read copies the message out (`to_vec`), as `mr_watcher_next` does when
//! it hands a C host its `mr_bytes`, and touches every byte.

use meshring::bus::{Bus, BusOptions, Watcher, WATCH_ENGINE_UPDATES, WATCH_PEER_CHANGES, WATCH_PEER_PATCHES};
use meshring::sync::Wait;
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Relaxed);
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Relaxed);
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A growing realloc counts its growth; shrinking counts nothing.
        ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn node(buf: &mut String, id: u64, version: u64) {
    let _ = write!(
        buf,
        r#"{{"ID":{id},"StableID":"n{id}","Name":"host-{id}.example.ts.net.","User":{},"Key":"nodekey:{:016x}","Addresses":["100.64.{}.{}/32"],"Endpoints":["198.51.100.{}:41641"],"HomeDERP":{},"Online":true,"V":{version}}}"#,
        id % 16,
        id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        id / 256 % 256,
        id % 256,
        id % 250 + 1,
        id % 20 + 1,
    );
}

/// The store: a MapResponse with `Node`, `UserProfiles` and the first
/// chunk as `Peers`, then the rest as `PeersChanged` chunks (keeps the
/// transient JSON small for 1M peers).
/// Returns the bytes of node JSON applied.
fn build(bus: &Bus, n: u64) -> u64 {
    let mut node_bytes = 0u64;
    const CHUNK: u64 = 100_000;
    let mut first = true;
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let mut j = String::with_capacity(((end - start) * 260) as usize + 4096);
        if first {
            j.push_str(r#"{"Node":{"ID":1,"Name":"self.example.ts.net.","User":0},"UserProfiles":["#);
            for u in 0..16 {
                let _ = write!(j, r#"{}{{"ID":{u},"LoginName":"user{u}@example.com","DisplayName":"User {u}"}}"#, if u > 0 { "," } else { "" });
            }
            j.push_str(r#"],"Peers":["#);
        } else {
            j.push_str(r#"{"PeersChanged":["#);
        }
        for i in start..end {
            if i > start {
                j.push(',');
            }
            let before = j.len();
            node(&mut j, 2 + i, 0);
            node_bytes += (j.len() - before) as u64;
        }
        j.push_str("]}");
        bus.apply(j.as_bytes()).expect("apply netmap");
        first = false;
        start = end;
    }
    node_bytes
}

struct Reader {
    watchers: Vec<Watcher>,
    checksum: u64,
    messages: u64,
    bytes: u64,
}

impl Reader {
    fn read_all(&mut self) {
        for w in &self.watchers {
            loop {
                match w.next(Wait::Never) {
                    Ok(msg) => {
                        // What a C host gets from mr_watcher_next: its own copy.
                        let copy = msg.to_vec();
                        self.checksum = copy.iter().fold(self.checksum, |a, &b| a.wrapping_mul(31).wrapping_add(b as u64));
                        self.messages += 1;
                        self.bytes += copy.len() as u64;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// One delta: a new peer added, an existing one removed, in one MapResponse.
fn deltas(next_id: &mut u64, oldest: &mut u64, m: usize) -> Vec<Vec<u8>> {
    (0..m)
        .map(|_| {
            let mut j = String::with_capacity(400);
            j.push_str(r#"{"PeersChanged":["#);
            node(&mut j, *next_id, 1);
            let _ = write!(j, r#"],"PeersRemoved":[{}]}}"#, *oldest);
            *next_id += 1;
            *oldest += 1;
            j.into_bytes()
        })
        .collect()
}

/// Times `m` deltas `reps` times; returns (median us/delta, bytes allocated/delta, messages/delta, msg bytes/delta).
fn time_scenario(bus: &Bus, reader: &mut Reader, next_id: &mut u64, oldest: &mut u64, m: usize, reps: usize) -> (f64, f64, f64, f64) {
    let mut times = Vec::new();
    let mut alloc = Vec::new();
    let (msg0, bytes0) = (reader.messages, reader.bytes);
    for _ in 0..reps {
        let inputs = deltas(next_id, oldest, m);
        let a0 = ALLOCATED.load(Relaxed);
        let t0 = Instant::now();
        for d in &inputs {
            bus.apply(d).expect("apply delta");
            reader.read_all();
        }
        let dt = t0.elapsed();
        alloc.push((ALLOCATED.load(Relaxed) - a0) as f64 / m as f64);
        times.push(dt.as_secs_f64() * 1e6 / m as f64);
        drop(inputs);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    alloc.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let total = (m * reps) as f64;
    (times[reps / 2], alloc[reps / 2], (reader.messages - msg0) as f64 / total, (reader.bytes - bytes0) as f64 / total)
}

/// Child: one store size; prints one RESULT line.
fn run_one(n: u64, m: usize, reps: usize) {
    let rss_start = rss_kib();
    let bus = Bus::new(BusOptions::default()).expect("bus");
    let t0 = Instant::now();
    let node_bytes = build(&bus, n);
    let build_s = t0.elapsed().as_secs_f64();
    let rss_store = rss_kib();
    // The node as the bus holds and serves it (tailscaled's shape: upgraded,
    // AllowedIPs filled in, display names added), averaged over a sample.
    let sample: Vec<u64> = (0..n).step_by((n as usize / 1000).max(1)).map(|i| 2 + i).collect();
    let served = sample.iter().map(|id| bus.peer(*id as i64).map(|j| j.len()).unwrap_or(0)).sum::<usize>() as f64 / sample.len() as f64;
    let mut next_id = 2 + n;
    let mut oldest = 2;

    let mut none = Reader { watchers: Vec::new(), checksum: 0, messages: 0, bytes: 0 };
    time_scenario(&bus, &mut none, &mut next_id, &mut oldest, m / 4, 1); // warm-up
    let a = time_scenario(&bus, &mut none, &mut next_id, &mut oldest, m, reps);

    let mut one = Reader { watchers: vec![bus.watch(WATCH_PEER_CHANGES).unwrap()], checksum: 0, messages: 0, bytes: 0 };
    let b = time_scenario(&bus, &mut one, &mut next_id, &mut oldest, m, reps);
    assert!(b.2 >= 0.99, "the PeerChanges watcher got {} messages per delta", b.2);
    // The goal's memory case: this store plus two watchers of two classes.
    let second = bus.watch(WATCH_PEER_PATCHES).unwrap();
    let mut two = Reader { watchers: vec![one.watchers.pop().unwrap(), second], checksum: 0, messages: 0, bytes: 0 };
    time_scenario(&bus, &mut two, &mut next_id, &mut oldest, m / 4, 1);
    let rss_two = rss_kib();
    drop(two);

    let masks = [WATCH_PEER_CHANGES, WATCH_PEER_PATCHES, WATCH_PEER_CHANGES | WATCH_ENGINE_UPDATES];
    let watchers = (0..16).map(|i| bus.watch(masks[i % 3]).unwrap()).collect();
    let mut sixteen = Reader { watchers, checksum: 0, messages: 0, bytes: 0 };
    let c = time_scenario(&bus, &mut sixteen, &mut next_id, &mut oldest, m, reps);
    assert!(c.2 >= 15.9, "16 watchers got {} messages per delta", c.2);

    // Every delta kept the size: the store still has n peers.
    let status = String::from_utf8(bus.stats().expect("status")).unwrap();
    let count_ok = status.contains(&format!("\"PeerCount\":{n},"));
    println!(
        "RESULT n={n} a_us={:.3} b_us={:.3} c_us={:.3} a_alloc={:.0} b_alloc={:.0} c_alloc={:.0} b_msg_bytes={:.0} c_msgs={:.2} build_s={:.2} rss_start_kib={rss_start} rss_store_kib={rss_store} rss_two_kib={rss_two} node_json={node_bytes} served_json={served:.0} count_ok={count_ok} checksum={}",
        a.0, b.0, c.0, a.1, b.1, c.1, b.3, c.2, build_s, one.checksum ^ sixteen.checksum
    );
}

/// Store RSS per peer: what building the store added, over its peers.
fn per_peer(line: &str) -> f64 {
    (field(line, "rss_store_kib") - field(line, "rss_start_kib")) * 1024.0 / field(line, "n")
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{key}="))).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut m = 2000usize;
    let mut reps = 3usize;
    let mut sizes: Vec<u64> = vec![10_000, 50_000, 100_000, 250_000, 1_000_000];
    let mut one: Option<u64> = None;
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--deltas" => m = v.parse().expect("--deltas M"),
            "--reps" => reps = v.parse().expect("--reps R"),
            "--sizes" => sizes = v.split(',').map(|s| s.parse().expect("--sizes N,N,...")).collect(),
            "--one" => one = Some(v.parse().expect("--one N")),
            other => panic!("unknown argument {other}; see the file header"),
        }
        i += 2;
    }
    if let Some(n) = one {
        run_one(n, m, reps);
        return;
    }

    println!("notify bus: cost per delta (1 peer added + 1 removed, one apply), median of {reps} x {m} deltas");
    println!("(b)/(c): every watcher reads (and copies out) every message right after each apply; one process per N");
    let exe = std::env::current_exe().expect("current_exe");
    let mut results = Vec::new();
    for &n in &sizes {
        let out = Command::new(&exe)
            .args(["--one", &n.to_string(), "--deltas", &m.to_string(), "--reps", &reps.to_string()])
            .output()
            .expect("run child");
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find(|l| l.starts_with("RESULT ")) {
            Some(line) if out.status.success() => results.push((n, line.to_string())),
            _ => {
                eprintln!("bus_bench: N={n} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
                std::process::exit(1);
            }
        }
    }
    println!(
        "{:>9} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>11} {:>13}",
        "peers", "a us/delta", "b us/delta", "c us/delta", "a B/delta", "b B/delta", "c B/delta", "b msg B", "build s", "RSS MB", "RSS+2w MB", "B/peer", "JSON B/peer", "served B/peer"
    );
    for (n, l) in &results {
        println!(
            "{:>9} {:>11.2} {:>11.2} {:>11.2} {:>11.0} {:>11.0} {:>11.0} {:>11.0} {:>9.2} {:>9.1} {:>9.1} {:>9.0} {:>11.0} {:>13.0}",
            n,
            field(l, "a_us"),
            field(l, "b_us"),
            field(l, "c_us"),
            field(l, "a_alloc"),
            field(l, "b_alloc"),
            field(l, "c_alloc"),
            field(l, "b_msg_bytes"),
            field(l, "build_s"),
            field(l, "rss_store_kib") / 1024.0,
            field(l, "rss_two_kib") / 1024.0,
            per_peer(l),
            field(l, "node_json") / *n as f64,
            field(l, "served_json"),
        );
        if !l.contains("count_ok=true") {
            println!("  N={n}: the store did not keep {n} peers through the deltas");
        }
    }
    let get = |n: u64, k: &str| results.iter().find(|(x, _)| *x == n).map(|(_, l)| field(l, k));
    if let (Some(_), Some(_)) = (get(10_000, "a_us"), get(1_000_000, "a_us")) {
        let ratio = |k: &str| get(1_000_000, k).unwrap() / get(10_000, k).unwrap();
        println!(
            "{:>9} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>11} {:>9} {:>9.1} {:>9.1} {:>9.2}",
            "1M/10k",
            ratio("a_us"),
            ratio("b_us"),
            ratio("c_us"),
            ratio("a_alloc"),
            ratio("b_alloc"),
            ratio("c_alloc"),
            "",
            "",
            ratio("rss_store_kib"),
            ratio("rss_two_kib"),
            per_peer(&results.iter().find(|(x, _)| *x == 1_000_000).unwrap().1) / per_peer(&results.iter().find(|(x, _)| *x == 10_000).unwrap().1),
        );
        let b10 = get(10_000, "b_us").unwrap();
        let b1m = get(1_000_000, "b_us").unwrap();
        let rss10 = get(10_000, "rss_two_kib").unwrap() / 1024.0;
        println!(
            "goal (b) <= 20 us/delta: 10k {:.2} us, 1M {:.2} us -> {}; flat in N (1M/10k <= 1.5): {:.2}x -> {}; 10k store + 2 watchers <= 30 MB RSS: {:.1} MB -> {}",
            b10,
            b1m,
            if b10 <= 20.0 && b1m <= 20.0 { "met" } else { "NOT met" },
            b1m / b10,
            if b1m / b10 <= 1.5 { "met" } else { "NOT met" },
            rss10,
            if rss10 <= 30.0 { "met" } else { "NOT met" },
        );
        let worst = results.iter().map(|(_, l)| per_peer(l) / (field(l, "node_json") / field(l, "n"))).fold(0.0, f64::max);
        let worst_served = results.iter().map(|(_, l)| per_peer(l) / field(l, "served_json")).fold(0.0, f64::max);
        println!(
            "goal store RSS per peer <= 2x the peer's JSON: worst {:.2}x the applied JSON -> {}; {:.2}x the node as served (after tailscaled's upgrade and naming) -> {}",
            worst,
            if worst <= 2.0 { "met" } else { "NOT met" },
            worst_served,
            if worst_served <= 2.0 { "met" } else { "NOT met" }
        );
    }
}
