//! Behaviours of QEMU's tests/unit/test-replication.c on our API, plus
//! resync, sync and durable acknowledgement, batches, corrupt and hostile
//! peers (no key, wrong key, replayed handshakes and frames, changed bits,
//! a second primary), over loopback.

use super::*;
use crate::error::{Error, ErrorKind};
use crate::replication::volume::tests::temp_volume;
use crate::udp::BackendChoice;
use std::io::{Read, Write};
use super::auth;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const BLOCKS: u64 = 16;
const BS: usize = 512;

const KEY: &[u8] = b"meshring test key: 32 bytes long";

fn psk() -> Psk {
    Psk::new(KEY).unwrap()
}

fn cfg(mode: Mode, ack: AckMode) -> ReplConfig {
    ReplConfig { mode, ack, connect_timeout: Duration::from_millis(500), peer_timeout: Duration::from_secs(2), psk: Some(psk()) }
}

/// Plays a secondary by hand: accepts, authenticates, welcomes; returns the
/// stream and the session (for frames the test sends or checks).
fn fake_secondary(listener: &TcpListener) -> (TcpStream, auth::Session) {
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut session = auth::secondary_handshake(&mut conn, &psk(), BS as u32, BLOCKS).unwrap();
    let mut out = Vec::new();
    encode(&Msg::Welcome, &mut session.s2p, &mut out);
    conn.write_all(&out).unwrap();
    (conn, session)
}

/// Waits until `get_error` reports `kind` (other errors are skipped).
fn wait_error(r: &Replication, kind: ErrorKind) -> Error {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match r.take_error() {
            Err(e) if e.kind == kind => return e,
            _ if std::time::Instant::now() > deadline => panic!("no {kind:?} error reported"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

struct Pair {
    primary: Replication,
    secondary: Replication,
    pvol: Arc<Volume>,
    svol: Arc<Volume>,
    paths: Vec<std::path::PathBuf>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.primary.close();
        self.secondary.close();
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn volume(tag: &str) -> (Arc<Volume>, std::path::PathBuf) {
    let (v, p) = temp_volume(tag, BLOCKS, BackendChoice::Auto);
    (Arc::new(v), p)
}

fn secondary_on_loopback(svol: &Arc<Volume>) -> Replication {
    Replication::start(svol.clone(), Some("127.0.0.1:0".parse().unwrap()), cfg(Mode::Secondary, AckMode::Sync)).unwrap()
}

fn pair(ack: AckMode) -> Pair {
    let (pvol, pp) = volume("p");
    let (svol, sp) = volume("s");
    let secondary = secondary_on_loopback(&svol);
    let primary = Replication::start(pvol.clone(), secondary.local_addr(), cfg(Mode::Primary, ack)).unwrap();
    primary.wait_synced(Wait::from_ms(5000)).unwrap();
    Pair { primary, secondary, pvol, svol, paths: vec![pp, sp] }
}

fn fill(byte: u8, blocks: usize) -> Vec<u8> {
    vec![byte; BS * blocks]
}

fn read(r: &Replication, block: u64, blocks: usize) -> Vec<u8> {
    let mut buf = vec![0u8; BS * blocks];
    r.read(block, &mut buf).unwrap();
    buf
}

fn raw(v: &Volume, block: u64) -> Vec<u8> {
    let mut buf = vec![0u8; BS];
    v.read(block, &mut buf).unwrap();
    buf
}

#[test]
fn sync_write_is_on_the_secondary_when_it_returns() {
    let p = pair(AckMode::Sync);
    p.primary.write(2, &fill(7, 2)).unwrap();
    assert_eq!(raw(&p.svol, 2), fill(7, 1));
    assert_eq!(raw(&p.svol, 3), fill(7, 1));
    assert_eq!(read(&p.primary, 2, 2), fill(7, 2));
    p.primary.take_error().unwrap();
    let stats = p.primary.stats().unwrap();
    assert!(stats.connected && stats.dirty_blocks == 0 && stats.writes_sent == 1, "{stats:?}");
}

#[test]
fn secondary_view_layers_and_checkpoint() {
    let p = pair(AckMode::Sync);
    p.primary.write(0, &fill(1, 4)).unwrap();
    p.primary.checkpoint(Wait::from_ms(5000)).unwrap();
    // The secondary's own write goes to active; the primary's later write
    // reaches the base, its old content the hidden layer.
    p.secondary.write(1, &fill(9, 1)).unwrap();
    p.primary.write(0, &fill(2, 2)).unwrap();
    assert_eq!(read(&p.secondary, 0, 3), [fill(1, 1), fill(9, 1), fill(1, 1)].concat());
    assert_eq!(raw(&p.svol, 0), fill(2, 1));
    let s = p.secondary.stats().unwrap();
    assert_eq!((s.active_blocks, s.hidden_blocks), (1, 1));
    // A checkpoint empties both layers: the view is the primary's.
    p.primary.checkpoint(Wait::from_ms(5000)).unwrap();
    let s = p.secondary.stats().unwrap();
    assert_eq!((s.active_blocks, s.hidden_blocks, s.checkpoints), (0, 0, 2));
    assert_eq!(read(&p.secondary, 0, 3), [fill(2, 2), fill(1, 1)].concat());
    assert_eq!(read(&p.secondary, 0, 4), read(&p.primary, 0, 4));
}

#[test]
fn secondary_failover_commits_active_over_primary_data() {
    let p = pair(AckMode::Async);
    p.primary.write(0, &fill(3, 3)).unwrap();
    p.primary.checkpoint(Wait::from_ms(5000)).unwrap();
    p.secondary.write(2, &fill(8, 1)).unwrap();
    p.primary.write(1, &fill(4, 1)).unwrap();
    p.primary.wait_synced(Wait::from_ms(5000)).unwrap();
    p.secondary.failover().unwrap();
    assert_eq!(p.secondary.stage().unwrap(), Stage::Done);
    assert_eq!(read(&p.secondary, 0, 3), [fill(3, 1), fill(4, 1), fill(8, 1)].concat());
    assert_eq!(raw(&p.svol, 2), fill(8, 1));
    // After DONE: plain volume I/O, and the calls are no-ops.
    p.secondary.write(5, &fill(6, 1)).unwrap();
    assert_eq!(raw(&p.svol, 5), fill(6, 1));
    p.secondary.failover().unwrap();
    p.secondary.checkpoint(Wait::from_ms(10)).unwrap();
    p.secondary.stop().unwrap();
    assert_eq!(p.secondary.take_error().unwrap_err().kind, ErrorKind::State);
    // The volume is free again.
    p.svol.write(6, &fill(1, 1)).unwrap();
}

#[test]
fn failover_failure_is_reported_and_can_be_retried() {
    let p = pair(AckMode::Sync);
    p.secondary.write(4, &fill(5, 1)).unwrap();
    p.svol.fail_writes.store(true, std::sync::atomic::Ordering::Release);
    let err = p.secondary.failover().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Io);
    assert_eq!(p.secondary.stage().unwrap(), Stage::FailoverFailed);
    let stored = p.secondary.take_error().unwrap_err();
    assert!(stored.message.contains("failover"), "{stored}");
    assert_eq!(p.secondary.checkpoint(Wait::from_ms(10)).unwrap_err().kind, ErrorKind::State);
    assert_eq!(p.secondary.stop().unwrap_err().kind, ErrorKind::State);
    // The speculative view survives the failed attempt.
    assert_eq!(read(&p.secondary, 4, 1), fill(5, 1));
    p.svol.fail_writes.store(false, std::sync::atomic::Ordering::Release);
    p.secondary.failover().unwrap();
    assert_eq!(p.secondary.stage().unwrap(), Stage::Done);
    assert_eq!(raw(&p.svol, 4), fill(5, 1));
}

#[test]
fn primary_stop_and_failover_continue_alone() {
    let p = pair(AckMode::Sync);
    p.primary.take_error().unwrap();
    p.primary.stop().unwrap();
    assert_eq!(p.primary.stage().unwrap(), Stage::Done);
    p.primary.write(0, &fill(2, 1)).unwrap();
    assert_eq!(raw(&p.pvol, 0), fill(2, 1));
    assert_eq!(raw(&p.svol, 0), fill(0, 1));
    p.primary.failover().unwrap();
    p.primary.checkpoint(Wait::from_ms(10)).unwrap();
    assert_eq!(p.primary.take_error().unwrap_err().kind, ErrorKind::State);
    p.primary.close();
    assert_eq!(p.primary.write(0, &fill(1, 1)).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(p.primary.stage().unwrap_err().kind, ErrorKind::Closed);
}

#[test]
fn secondary_stop_discards_layers() {
    let p = pair(AckMode::Sync);
    p.primary.write(0, &fill(1, 1)).unwrap();
    p.primary.checkpoint(Wait::from_ms(5000)).unwrap();
    p.secondary.write(0, &fill(7, 1)).unwrap();
    p.secondary.stop().unwrap();
    assert_eq!(read(&p.secondary, 0, 1), fill(1, 1));
}

#[test]
fn late_secondary_is_resynced_from_the_dirty_map() {
    let (pvol, pp) = volume("late-p");
    let (svol, sp) = volume("late-s");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let primary = Replication::start(pvol.clone(), Some(port), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    primary.write(3, &fill(4, 1)).unwrap();
    primary.write(9, &fill(5, 2)).unwrap();
    assert_eq!(primary.take_error().unwrap_err().kind, ErrorKind::Io, "connect refused is reported");
    assert_eq!(primary.stats().unwrap().dirty_blocks, 3);
    assert_eq!(primary.checkpoint(Wait::from_ms(50)).unwrap_err().kind, ErrorKind::Timeout);
    let secondary = Replication::start(svol.clone(), Some(port), cfg(Mode::Secondary, AckMode::Sync)).unwrap();
    primary.wait_synced(Wait::from_ms(5000)).unwrap();
    primary.checkpoint(Wait::from_ms(5000)).unwrap();
    assert_eq!(read(&secondary, 0, BLOCKS as usize), read(&primary, 0, BLOCKS as usize));
    assert_eq!(primary.stats().unwrap().resync_blocks, 3);
    primary.close();
    secondary.close();
    let _ = (std::fs::remove_file(pp), std::fs::remove_file(sp));
}

#[test]
fn second_replication_on_a_volume_is_refused() {
    let p = pair(AckMode::Sync);
    let again = Replication::start(p.pvol.clone(), Some("127.0.0.1:9".parse().unwrap()), cfg(Mode::Primary, AckMode::Sync));
    assert_eq!(again.err().unwrap().kind, ErrorKind::State);
    assert_eq!(p.pvol.write(0, &fill(1, 1)).unwrap_err().kind, ErrorKind::State);
}

/// Stop, then start a new replication on the same volume, then close the
/// stopped handle: the close must not free the new replication's hold.
fn restart_then_close_old(mode: Mode, tag: &str) {
    let (vol, path) = volume(tag);
    let addr = match mode {
        Mode::Primary => TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(),
        Mode::Secondary => "127.0.0.1:0".parse().unwrap(),
    };
    let r1 = Replication::start(vol.clone(), Some(addr), cfg(mode, AckMode::Sync)).unwrap();
    r1.stop().unwrap();
    let r2 = Replication::start(vol.clone(), Some(addr), cfg(mode, AckMode::Sync)).unwrap();
    r1.close();
    drop(r1);
    assert_eq!(vol.write(0, &fill(1, 1)).unwrap_err().kind, ErrorKind::State, "{mode:?}: r2 still owns the volume");
    r2.close();
    vol.write(0, &fill(1, 1)).unwrap();
    let _ = std::fs::remove_file(path);
}

#[test]
fn closing_a_stopped_handle_keeps_the_next_replications_hold() {
    restart_then_close_old(Mode::Primary, "re-p");
    restart_then_close_old(Mode::Secondary, "re-s");
}

#[test]
fn closing_a_failed_over_secondary_keeps_the_next_replications_hold() {
    let (vol, path) = volume("re-f");
    let r1 = secondary_on_loopback(&vol);
    r1.failover().unwrap();
    let r2 = secondary_on_loopback(&vol);
    drop(r1);
    assert_eq!(vol.write(0, &fill(1, 1)).unwrap_err().kind, ErrorKind::State);
    drop(r2);
    vol.write(0, &fill(1, 1)).unwrap();
    let _ = std::fs::remove_file(path);
}

#[test]
fn secondary_start_failing_after_listen_leaves_the_volume_free() {
    let (vol, path) = volume("evfd");
    secondary::FAIL_EVENTFD.with(|f| f.set(true));
    let err = Replication::start(vol.clone(), Some("127.0.0.1:0".parse().unwrap()), cfg(Mode::Secondary, AckMode::Sync));
    assert!(err.is_err());
    vol.write(0, &fill(1, 1)).unwrap();
    let r = secondary_on_loopback(&vol);
    r.close();
    let _ = std::fs::remove_file(path);
}

#[test]
fn failing_accept_pauses_instead_of_spinning() {
    let (vol, path) = volume("emfile");
    let r = secondary_on_loopback(&vol);
    let Replication::Secondary(s) = &r else { unreachable!() };
    let before = s.accept_fault(true);
    // A pending connection keeps the listener readable while accept fails.
    let _client = TcpStream::connect(r.local_addr().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    let attempts = s.accept_fault(false) - before;
    assert!((1..=6).contains(&attempts), "{attempts} accept calls in 350 ms");
    let e = r.take_error().unwrap_err();
    assert!(e.kind == ErrorKind::Io && e.message.contains("accept"), "{e:?}");
    // Close wakes the pause at once.
    s.accept_fault(true);
    let _client2 = TcpStream::connect(r.local_addr().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let t = std::time::Instant::now();
    r.close();
    assert!(t.elapsed() < Duration::from_millis(80), "close took {:?}", t.elapsed());
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_link_dying_after_the_handshake_is_retried_with_backoff() {
    let (pvol, pp) = volume("flap");
    // A secondary that welcomes the primary and hangs up at once.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = conns.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            if let Ok(mut session) = auth::secondary_handshake(&mut stream, &psk(), BS as u32, BLOCKS) {
                let mut out = Vec::new();
                encode(&Msg::Welcome, &mut session.s2p, &mut out);
                let _ = stream.write_all(&out);
            }
        }
    });
    let primary = Replication::start(pvol.clone(), Some(addr), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    primary.close();
    let n = conns.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=45).contains(&n), "{n} connections in 600 ms");
    let _ = std::fs::remove_file(pp);
}

#[test]
fn a_clean_stop_clears_the_stored_error_on_both_sides() {
    let (pvol, pp) = volume("stop-err-p");
    let (svol, sp) = volume("stop-err-s");
    let secondary = secondary_on_loopback(&svol);
    let Replication::Secondary(s) = &secondary else { unreachable!() };
    s.accept_fault(true);
    let _client = TcpStream::connect(secondary.local_addr().unwrap()).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let primary = Replication::start(pvol.clone(), Some(port), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    primary.write(0, &fill(1, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for r in [&primary, &secondary] {
        r.stop().unwrap();
        assert_eq!(r.take_error().unwrap_err().kind, ErrorKind::State, "{:?}: no error after a clean stop", r.mode());
    }
    let _ = (std::fs::remove_file(pp), std::fs::remove_file(sp));
}

#[test]
fn corrupt_primary_is_reported_by_the_secondary() {
    let (svol, sp) = volume("fake-p");
    let secondary = secondary_on_loopback(&svol);
    let mut fake = TcpStream::connect(secondary.local_addr().unwrap()).unwrap();
    fake.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    fake.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = fake.read_to_end(&mut reply);
    let err = secondary.take_error().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Parse, "{err}");
    let mut hs = Direction::new(psk().handshake_key());
    assert!(matches!(read_handshake_msg(&mut &reply[..], &mut hs), Ok((Msg::Error { .. }, true))), "the fake peer is told why");
    assert_eq!(secondary.stats().unwrap().refused, 1);
    assert_eq!(secondary.stage().unwrap(), Stage::Running);
    secondary.close();
    let _ = std::fs::remove_file(sp);
}

#[test]
fn corrupt_secondary_is_reported_by_the_primary() {
    let (pvol, pp) = volume("fake-s");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let primary = Replication::start(pvol.clone(), listener.local_addr().ok(), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut hello = [0u8; 80];
    conn.read_exact(&mut hello).unwrap();
    conn.write_all(&[0xAB; 40]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let err = loop {
        match primary.take_error() {
            Err(e) if e.kind == ErrorKind::Parse => break e,
            _ if std::time::Instant::now() > deadline => panic!("no parse error reported"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    assert!(err.message.contains("magic"), "{err}");
    primary.write(0, &fill(1, 1)).unwrap();
    primary.close();
    let _ = std::fs::remove_file(pp);
}

#[test]
fn geometry_mismatch_is_refused() {
    let (pvol, pp) = volume("geo-p");
    let (small, sp) = temp_volume("geo-s", BLOCKS / 2, BackendChoice::Batch);
    let secondary = secondary_on_loopback(&Arc::new(small));
    let primary = Replication::start(pvol, secondary.local_addr(), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    assert_eq!(primary.wait_synced(Wait::from_ms(300)).unwrap_err().kind, ErrorKind::Timeout);
    let err = primary.take_error().unwrap_err();
    assert!(err.message.contains("geometry"), "{err}");
    primary.close();
    secondary.close();
    let _ = (std::fs::remove_file(pp), std::fs::remove_file(sp));
}

#[test]
fn concurrent_writers_and_checkpoints_end_identical() {
    for ack in [AckMode::Sync, AckMode::Async] {
        let p = Arc::new(pair(ack));
        let writers: Vec<_> = (0..4u8)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let block = (i * 7 + t as u64) % BLOCKS;
                        p.primary.write(block, &fill(t.wrapping_mul(50).wrapping_add(i as u8), 1)).unwrap();
                        if i % 50 == 0 {
                            p.primary.checkpoint(Wait::from_ms(5000)).unwrap();
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        p.primary.wait_synced(Wait::from_ms(5000)).unwrap();
        p.primary.checkpoint(Wait::from_ms(5000)).unwrap();
        p.primary.take_error().unwrap();
        assert_eq!(read(&p.secondary, 0, BLOCKS as usize), read(&p.primary, 0, BLOCKS as usize), "{ack:?}");
    }
}

#[test]
fn close_ends_a_sync_write_waiting_for_its_ack() {
    // A fake secondary that completes the handshake and then never acknowledges.
    let (pvol, pp) = volume("noack");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = cfg(Mode::Primary, AckMode::Sync);
    config.peer_timeout = Duration::from_secs(30);
    let primary = Arc::new(Replication::start(pvol, listener.local_addr().ok(), config).unwrap());
    let (_conn, _session) = fake_secondary(&listener);
    primary.wait_synced(Wait::from_ms(5000)).unwrap();
    let writer = {
        let primary = primary.clone();
        std::thread::spawn(move || primary.write(1, &fill(3, 1)))
    };
    // Close only once the write is really waiting for its acknowledgement.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while primary.stats().unwrap().inflight_writes == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(primary.stats().unwrap().inflight_writes, 1, "the write never went out");
    let started = std::time::Instant::now();
    primary.close();
    let result = writer.join().unwrap();
    assert_eq!(result.unwrap_err().kind, ErrorKind::Closed);
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = std::fs::remove_file(pp);
}

#[test]
fn async_checkpoint_does_not_overtake_queued_writes() {
    let p = pair(AckMode::Async);
    for round in 0..3u8 {
        // Far more than one socket write's worth, queued faster than sent.
        for i in 0..3000u64 {
            p.primary.write(i % BLOCKS, &fill(round.wrapping_mul(31).wrapping_add(i as u8), 1)).unwrap();
        }
        // No wait_synced: the barrier goes into the same queue behind the writes.
        p.primary.checkpoint(Wait::from_ms(5000)).unwrap();
        assert_eq!(read(&p.secondary, 0, BLOCKS as usize), read(&p.primary, 0, BLOCKS as usize), "round {round}");
        assert_eq!(p.secondary.stats().unwrap().hidden_blocks, 0);
    }
    p.primary.take_error().unwrap();
}

#[test]
fn async_back_pressure_then_a_stuck_link_is_dropped_and_resynced() {
    // A fake secondary that completes the handshake and then never reads:
    // the socket buffers fill, then the send queue; writers wait (bounded
    // queue), until the send times out after the peer timeout. Then writes
    // go on locally, the error is reported and every block stays dirty.
    let (pvol, pp) = volume("stuck");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = cfg(Mode::Primary, AckMode::Async);
    config.peer_timeout = Duration::from_millis(800);
    let primary = Replication::start(pvol, listener.local_addr().ok(), config).unwrap();
    let (conn, _session) = fake_secondary(&listener);
    primary.wait_synced(Wait::from_ms(5000)).unwrap();
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    // 64 MiB of frames: more than socket buffers plus the queue bound.
    for i in 0..(64usize << 20) / BS {
        let t = std::time::Instant::now();
        primary.write(i as u64 % BLOCKS, &fill(i as u8, 1)).unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert!(slowest >= Duration::from_millis(300), "no write waited for room (slowest {slowest:?})");
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = primary.take_error().unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Io | ErrorKind::Timeout), "{err}");
    assert_eq!(primary.stats().unwrap().dirty_blocks, BLOCKS);
    drop(conn);
    // A real secondary at the same address gets everything by resync.
    let (svol, sp) = volume("stuck-s");
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let secondary = Replication::start(svol.clone(), Some(addr), cfg(Mode::Secondary, AckMode::Sync)).unwrap();
    primary.wait_synced(Wait::from_ms(10000)).unwrap();
    primary.checkpoint(Wait::from_ms(5000)).unwrap();
    assert_eq!(read(&secondary, 0, BLOCKS as usize), read(&primary, 0, BLOCKS as usize));
    let closing = std::time::Instant::now();
    primary.close();
    secondary.close();
    assert!(closing.elapsed() < Duration::from_secs(5));
    let _ = (std::fs::remove_file(pp), std::fs::remove_file(sp));
}

#[test]
fn a_sync_write_racing_close_is_ok_only_when_the_secondary_has_it() {
    // Writers write continuously while another thread closes: whichever
    // write close lands in (before the frame is sent, while it is sent, while
    // it waits) may return MR_OK only if the secondary acknowledged it.
    const WRITERS: u64 = 4;
    for round in 0..2000 {
        let p = pair(AckMode::Sync);
        let primary = &p.primary;
        let results: Vec<(Vec<u64>, Error)> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    s.spawn(move || {
                        let mut last_ok = vec![0u64; BLOCKS as usize];
                        for i in 1u64.. {
                            let block = (i * WRITERS + w) % BLOCKS;
                            let mut data = fill(0, 1);
                            data[..8].copy_from_slice(&i.to_le_bytes());
                            match primary.write(block, &data) {
                                Ok(()) => last_ok[block as usize] = i,
                                Err(e) => return (last_ok, e),
                            }
                        }
                        unreachable!()
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_micros(200 + (round % 7) * 150));
            primary.close();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for (last_ok, ended) in results {
            assert_eq!(ended.kind, ErrorKind::Closed, "round {round}: {ended}");
            for (block, ok) in last_ok.iter().enumerate() {
                let on_secondary = u64::from_le_bytes(raw(&p.svol, block as u64)[..8].try_into().unwrap());
                assert!(
                    *ok == 0 || on_secondary >= *ok,
                    "round {round}: write {ok} to block {block} returned MR_OK but the secondary has {on_secondary}"
                );
            }
        }
    }
}

#[test]
fn a_replication_thread_panic_is_reported_as_panic() {
    // Async mode: acknowledgements are read on the library's reader thread.
    let p = pair(AckMode::Async);
    let Replication::Primary(primary) = &p.primary else { unreachable!() };
    primary.shared.panic_on_ack.store(true, std::sync::atomic::Ordering::Release);
    // The write is applied locally; its acknowledgement kills the reader.
    p.primary.write(1, &fill(5, 1)).unwrap();
    let e = wait_error(&p.primary, ErrorKind::Panic);
    assert!(e.message.contains("replication acknowledgement reader thread panicked: test panic on acknowledgement"), "{e}");
    assert_eq!(raw(&p.pvol, 1), fill(5, 1));
    for e in [p.primary.take_error().unwrap_err(), p.primary.write(2, &fill(6, 1)).unwrap_err(), p.primary.stats().unwrap_err()] {
        assert_eq!(e.kind, ErrorKind::Panic, "{e}");
    }
    // Close still frees: the volume takes a new replication.
    p.primary.close();
    let again = Replication::start(p.pvol.clone(), p.secondary.local_addr(), cfg(Mode::Primary, AckMode::Async)).unwrap();
    again.close();
}

/// The real primary still replicates: a sync write is on the secondary's
/// base when it returns, with no error stored.
fn still_replicating(p: &Pair, block: u64, byte: u8) {
    p.primary.write(block, &fill(byte, 1)).unwrap();
    p.primary.take_error().unwrap();
    assert_eq!(raw(&p.svol, block), fill(byte, 1), "the real primary's write reached the secondary");
    assert!(p.primary.stats().unwrap().connected);
}

#[test]
fn peers_without_the_key_are_refused_and_the_primary_keeps_replicating() {
    let p = pair(AckMode::Sync);
    let addr = p.secondary.local_addr().unwrap();
    // No key: a HELLO tagged with an empty key.
    let mut fake = TcpStream::connect(addr).unwrap();
    let mut hello = Vec::new();
    encode(&Msg::Hello { block_size: BS as u32, block_count: BLOCKS, nonce: [1; 32] }, &mut Direction::new(FrameKey::new(b"")), &mut hello);
    fake.write_all(&hello).unwrap();
    let e = wait_error(&p.secondary, ErrorKind::Auth);
    assert!(e.message.contains("HELLO does not verify"), "{e}");
    still_replicating(&p, 1, 11);
    // The previous protocol (no MAC at all): refused as malformed.
    let mut old = TcpStream::connect(addr).unwrap();
    let mut v1 = hello.clone();
    v1[4] = 1;
    old.write_all(&v1).unwrap();
    let e = wait_error(&p.secondary, ErrorKind::Parse);
    assert!(e.message.contains("version 1"), "{e}");
    still_replicating(&p, 2, 12);
    // A wrong key: a real primary with another key.
    let (wvol, wpath) = volume("wrong-key");
    let mut c = cfg(Mode::Primary, AckMode::Sync);
    c.psk = Some(Psk::new(b"a different key of 32 bytes long").unwrap());
    let wrong = Replication::start(wvol, Some(addr), c).unwrap();
    let e = wait_error(&p.secondary, ErrorKind::Auth);
    assert!(e.message.contains("refused primary"), "{e}");
    let e = wait_error(&wrong, ErrorKind::Auth);
    assert!(e.message.contains("pre-shared keys"), "{e}");
    wrong.close();
    still_replicating(&p, 3, 13);
    assert!(p.secondary.stats().unwrap().refused >= 3);
    let _ = std::fs::remove_file(wpath);
}

#[test]
fn a_second_primary_with_the_key_is_refused_while_one_is_connected() {
    let p = pair(AckMode::Sync);
    let (hvol, hpath) = volume("hijack");
    let hijacker = Replication::start(hvol.clone(), p.secondary.local_addr(), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    let e = wait_error(&p.secondary, ErrorKind::State);
    assert!(e.message.contains("another primary is connected"), "{e}");
    let e = wait_error(&hijacker, ErrorKind::State);
    assert!(e.message.contains("another primary"), "{e}");
    // The hijacker's writes never reach the secondary; the real primary's do.
    hijacker.write(4, &fill(66, 1)).unwrap();
    still_replicating(&p, 5, 15);
    assert_eq!(raw(&p.svol, 4), fill(0, 1));
    // Takeover rule: once the real primary's connection ends, the other one gets in.
    p.primary.close();
    hijacker.wait_synced(Wait::from_ms(10000)).unwrap();
    assert_eq!(raw(&p.svol, 4), fill(66, 1), "resynced by the new primary");
    hijacker.close();
    let _ = std::fs::remove_file(hpath);
}

/// Bytes a stream wrote, for replaying them.
struct Recorder<'a> {
    inner: &'a mut TcpStream,
    sent: Vec<u8>,
}

impl Read for Recorder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Recorder<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sent.extend_from_slice(buf);
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_replayed_handshake_is_refused() {
    let (svol, sp) = volume("replay-hs");
    let secondary = secondary_on_loopback(&svol);
    let addr = secondary.local_addr().unwrap();
    // A genuine handshake, recorded.
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rec = Recorder { inner: &mut conn, sent: Vec::new() };
    auth::primary_handshake(&mut rec, &psk(), BS as u32, BLOCKS).unwrap();
    let recorded = rec.sent;
    drop(conn);
    secondary.wait_synced(Wait::from_ms(5000)).unwrap_or(());
    // Replayed on a new connection: HELLO passes, AUTH was for another nonce.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while secondary.stats().unwrap().connected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut replay = TcpStream::connect(addr).unwrap();
    replay.write_all(&recorded).unwrap();
    let e = wait_error(&secondary, ErrorKind::Auth);
    assert!(e.message.contains("could not prove"), "{e}");
    assert_eq!(secondary.stats().unwrap().reconnects, 1, "only the genuine handshake was accepted");
    secondary.close();
    let _ = std::fs::remove_file(sp);
}

/// What the man in the middle does to the next WRITE frame from the primary.
const PASS: u8 = 0;
const FLIP: u8 = 1;
const REPLAY: u8 = 2;

/// A TCP proxy between primary and secondary that can flip a bit in, or
/// send twice, the next WRITE frame going to the secondary.
fn mitm(upstream: SocketAddr, mode: Arc<std::sync::atomic::AtomicU8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for down in listener.incoming() {
            let Ok(mut down) = down else { return };
            let Ok(mut up) = TcpStream::connect(upstream) else { return };
            let (mut up_r, mut down_w) = (up.try_clone().unwrap(), down.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_r, &mut down_w);
                let _ = down_w.shutdown(std::net::Shutdown::Both);
            });
            let mode = mode.clone();
            std::thread::spawn(move || {
                // Frame by frame: header, payload + tag.
                loop {
                    let mut h = [0u8; wire::HEADER_LEN];
                    if down.read_exact(&mut h).is_err() {
                        break;
                    }
                    let len = u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
                    let mut rest = vec![0u8; len + auth::TAG_LEN];
                    if down.read_exact(&mut rest).is_err() {
                        break;
                    }
                    let mut frame = h.to_vec();
                    frame.extend_from_slice(&rest);
                    if h[5] == 3 {
                        match mode.swap(PASS, std::sync::atomic::Ordering::AcqRel) {
                            FLIP => frame[wire::HEADER_LEN + 8 + 100] ^= 0x04,
                            REPLAY => {
                                let again = frame.clone();
                                frame.extend_from_slice(&again);
                            }
                            _ => {}
                        }
                    }
                    if up.write_all(&frame).is_err() {
                        break;
                    }
                }
                let _ = up.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn a_changed_or_replayed_frame_drops_the_link_and_the_primary_resyncs() {
    let (pvol, pp) = volume("mitm-p");
    let (svol, sp) = volume("mitm-s");
    let secondary = secondary_on_loopback(&svol);
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(PASS));
    let proxy = mitm(secondary.local_addr().unwrap(), mode.clone());
    let primary = Replication::start(pvol.clone(), Some(proxy), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    primary.wait_synced(Wait::from_ms(5000)).unwrap();
    for (round, what) in [(1u8, FLIP), (2, REPLAY)] {
        mode.store(what, std::sync::atomic::Ordering::Release);
        primary.write(round as u64, &fill(round * 10, 1)).unwrap();
        let e = wait_error(&secondary, ErrorKind::Auth);
        assert!(e.message.contains("does not verify"), "round {round}: {e}");
        // The link was dropped; the primary reconnects and resyncs the block.
        primary.wait_synced(Wait::from_ms(10000)).unwrap();
        primary.checkpoint(Wait::from_ms(5000)).unwrap();
        assert_eq!(raw(&svol, round as u64), fill(round * 10, 1), "round {round}");
    }
    // A changed frame never reached the volume: what is there is the primary's.
    assert_eq!(read(&secondary, 0, BLOCKS as usize), read(&primary, 0, BLOCKS as usize));
    assert!(primary.stats().unwrap().reconnects >= 3);
    primary.close();
    secondary.close();
    let _ = (std::fs::remove_file(pp), std::fs::remove_file(sp));
}

fn socketpair() -> (TcpStream, TcpStream) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    (TcpStream::from(std::os::fd::OwnedFd::from(a)), TcpStream::from(std::os::fd::OwnedFd::from(b)))
}

#[test]
fn host_supplied_connections_replicate_and_reconnect() {
    let (pvol, pp) = volume("host-p");
    let (svol, sp) = volume("host-s");
    let secondary = Replication::start(svol.clone(), None, cfg(Mode::Secondary, AckMode::Sync)).unwrap();
    let primary = Replication::start(pvol.clone(), None, cfg(Mode::Primary, AckMode::Durable)).unwrap();
    assert_eq!(secondary.local_addr(), None);
    primary.write(1, &fill(1, 1)).unwrap(); // not connected yet: dirty
    let (a, b) = socketpair();
    primary.add_connection(a).map_err(|(e, _)| e).unwrap();
    secondary.add_connection(b).map_err(|(e, _)| e).unwrap();
    primary.wait_synced(Wait::from_ms(5000)).unwrap();
    primary.write(2, &fill(2, 1)).unwrap();
    assert_eq!((raw(&svol, 1), raw(&svol, 2)), (fill(1, 1), fill(2, 1)));
    // The host's link breaks (the secondary restarts); the host hands over
    // a new one; the primary resyncs what it wrote meanwhile.
    secondary.close();
    drop(secondary);
    primary.write(3, &fill(3, 1)).unwrap();
    let secondary = Replication::start(svol.clone(), None, cfg(Mode::Secondary, AckMode::Sync)).unwrap();
    let (a, b) = socketpair();
    primary.add_connection(a).map_err(|(e, _)| e).unwrap();
    secondary.add_connection(b).map_err(|(e, _)| e).unwrap();
    primary.wait_synced(Wait::from_ms(10000)).unwrap();
    assert_eq!(raw(&svol, 3), fill(3, 1));
    assert_eq!(primary.stats().unwrap().reconnects, 2);
    // A primary that connects by itself takes no host connections, and the
    // caller gets the socket back.
    let (c, _d) = socketpair();
    let (pv2, pp2) = volume("host-p2");
    let own = Replication::start(pv2, Some("127.0.0.1:9".parse().unwrap()), cfg(Mode::Primary, AckMode::Sync)).unwrap();
    let (e, back) = own.add_connection(c).unwrap_err();
    assert_eq!(e.kind, ErrorKind::State);
    assert!(back.take_error().is_ok(), "the stream came back usable");
    own.close();
    primary.close();
    secondary.close();
    let _ = (std::fs::remove_file(pp), std::fs::remove_file(sp), std::fs::remove_file(pp2));
}

#[test]
fn durable_writes_share_fdatasyncs_on_both_sides() {
    let p = Arc::new(pair(AckMode::Durable));
    const THREADS: u64 = 8;
    const WRITES: u64 = 25;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let p = p.clone();
            s.spawn(move || {
                for i in 0..WRITES {
                    let block = t * 2 + i % 2;
                    let byte = (t * 30 + i) as u8;
                    p.primary.write(block, &fill(byte, 1)).unwrap();
                    // Only this thread writes this block: the secondary has it now.
                    assert_eq!(raw(&p.svol, block), fill(byte, 1));
                }
            });
        }
    });
    p.primary.take_error().unwrap();
    let (ps, ss) = (p.primary.stats().unwrap(), p.secondary.stats().unwrap());
    let writes = THREADS * WRITES;
    assert_eq!(ss.writes_applied, writes);
    assert!(ps.flushes >= 1 && ps.flushes < writes, "primary: {} fdatasyncs for {writes} writes", ps.flushes);
    assert!(ss.flushes >= 1 && ss.flushes < writes, "secondary: {} fdatasyncs for {writes} writes", ss.flushes);
}

#[test]
fn a_batch_goes_out_together_and_overlaps_are_refused() {
    for ack in [AckMode::Sync, AckMode::Durable, AckMode::Async] {
        let p = pair(ack);
        let (a, b, c) = (fill(1, 2), fill(2, 1), fill(3, 3));
        p.primary.write_batch(&[(0, &a[..]), (5, &b[..]), (9, &c[..])]).unwrap();
        if ack != AckMode::Async {
            assert_eq!((raw(&p.svol, 1), raw(&p.svol, 5), raw(&p.svol, 11)), (fill(1, 1), fill(2, 1), fill(3, 1)), "{ack:?}");
        }
        p.primary.wait_synced(Wait::from_ms(5000)).unwrap();
        assert_eq!(p.primary.stats().unwrap().writes_sent, 3);
        assert_eq!(read(&p.primary, 0, BLOCKS as usize), [fill(1, 2), fill(0, 3), fill(2, 1), fill(0, 3), fill(3, 3), fill(0, 4)].concat());
        let e = p.primary.write_batch(&[(0, &a[..]), (1, &b[..])]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{ack:?}: {e}");
        // The secondary's own batch goes to its active layer.
        p.secondary.write_batch(&[(14, &b[..]), (12, &b[..])]).unwrap();
        assert_eq!(p.secondary.stats().unwrap().active_blocks, 2);
        assert_eq!(raw(&p.svol, 14), fill(0, 1));
    }
}

#[test]
fn the_overlays_live_beside_the_volume_and_go_with_the_handle() {
    let p = pair(AckMode::Sync);
    let active = format!("{}.active", p.paths[1].display());
    let hidden = format!("{}.hidden", p.paths[1].display());
    p.primary.write(0, &fill(4, 1)).unwrap();
    p.secondary.write(3, &fill(5, 1)).unwrap();
    assert!(std::path::Path::new(&active).exists() && std::path::Path::new(&hidden).exists());
    assert_eq!(std::fs::read(&active).unwrap()[3 * BS..4 * BS], fill(5, 1)[..]);
    let Pair { primary, secondary, .. } = &p;
    primary.close();
    secondary.close();
    drop(p);
    assert!(!std::path::Path::new(&active).exists() && !std::path::Path::new(&hidden).exists());
}

#[test]
fn a_handshake_dripping_one_byte_at_a_time_is_cut_off() {
    // The whole handshake must finish within the peer timeout (2 s here),
    // not each read: a peer sending one byte every 300 ms would otherwise
    // hold a handshake slot for the 24 s its 80-byte HELLO takes.
    let (svol, sp) = volume("drip");
    let secondary = secondary_on_loopback(&svol);
    let mut conn = TcpStream::connect(secondary.local_addr().unwrap()).unwrap();
    let mut hello = Vec::new();
    encode(&Msg::Hello { block_size: BS as u32, block_count: BLOCKS, nonce: [5; 32] }, &mut Direction::new(psk().handshake_key()), &mut hello);
    let mut cut_off = false;
    for byte in &hello {
        if conn.write_all(&[*byte]).is_err() {
            cut_off = true;
            break;
        }
        conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        match conn.read(&mut [0u8; 64]) {
            Ok(0) => {
                cut_off = true;
                break;
            }
            Ok(_) => {}
            Err(_) => {} // nothing yet: keep dripping
        }
    }
    assert!(cut_off, "the secondary waited for the whole dripped HELLO");
    let e = wait_error(&secondary, ErrorKind::Timeout);
    assert!(e.message.contains("refused primary"), "{e}");
    secondary.close();
    let _ = std::fs::remove_file(sp);
}
