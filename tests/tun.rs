//! TUN handle behaviour. Needs root: each test runs in a thread that first
//! enters a fresh network namespace, so devices and addresses exist only there.

use meshring::error::ErrorKind;
use meshring::sync::Wait;
use meshring::tun::{Packet, Tun, TunConfig};
use meshring::udp::BackendChoice;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `body` in a new network namespace, or prints why it cannot.
fn in_netns(name: &str, body: impl FnOnce() + Send + 'static) {
    let why_not = if !std::path::Path::new("/dev/net/tun").exists() {
        Some("kernel has no /dev/net/tun".to_string())
    } else {
        None
    };
    if let Some(why) = why_not {
        eprintln!("SKIP {name}: {why}");
        return;
    }
    let result = std::thread::spawn(move || match meshring::sys::enter_new_netns() {
        Ok(()) => {
            body();
            true
        }
        Err(e) => {
            eprintln!("SKIP: cannot create a network namespace (needs root): {e}");
            false
        }
    })
    .join();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn backends() -> Vec<TunConfig> {
    let mut v = vec![TunConfig { backend: BackendChoice::Batch, ..TunConfig::default() }];
    if meshring::uring::probe().unusable.is_none() {
        v.push(TunConfig { backend: BackendChoice::Uring, ..TunConfig::default() });
    }
    v
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in bytes.chunks(2) {
        sum += u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request from `src` to `dst` with `payload`.
fn echo_request(src: [u8; 4], dst: [u8; 4], id: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..26].copy_from_slice(&id.to_be_bytes());
    p[28..].copy_from_slice(payload);
    let c = checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn echo_request_written_comes_back_as_reply() {
    in_netns("tun round trip", || {
        for (i, cfg) in backends().into_iter().enumerate() {
            for packet_info in [false, true] {
                let cfg = TunConfig { packet_info, mtu: 1400, ..cfg.clone() };
                let tun = Tun::create("mrtest%d", &cfg).unwrap();
                assert!(tun.name().starts_with("mrtest"), "{}", tun.name());
                assert_eq!(tun.mtu().unwrap(), 1400);
                ip(&["addr", "add", "198.18.5.1/24", "dev", tun.name()]);
                ip(&["link", "set", tun.name(), "up"]);
                // Drain whatever the kernel sent when the link came up (IPv6 router solicitations...).
                let mut slots: Vec<Packet> = (0..8).map(|_| Packet::with_capacity(2048)).collect();
                while tun.read(&mut slots, Wait::from_ms(50)).is_ok() {}
                let requests: Vec<Vec<u8>> = (0..4u16).map(|k| echo_request([198, 18, 5, 2], [198, 18, 5, 1], 100 + k, b"meshring tun test")).collect();
                let views: Vec<&[u8]> = requests.iter().map(|r| r.as_slice()).collect();
                let (written, err) = tun.write(&views);
                assert_eq!((written, err.map(|e| e.kind)), (4, None), "{cfg:?}");
                let mut replies = 0;
                let deadline = Instant::now() + Duration::from_secs(3);
                while replies < 4 && Instant::now() < deadline {
                    let Ok(n) = tun.read(&mut slots, Wait::from_ms(500)) else { continue };
                    for p in &slots[..n] {
                        let d = p.data();
                        if p.proto == 0x0800 && d.len() >= 28 && d[9] == 1 && d[20] == 0 && d[16..20] == [198, 18, 5, 2] {
                            assert_eq!(&d[28..], b"meshring tun test");
                            replies += 1;
                        }
                    }
                }
                assert_eq!(replies, 4, "{cfg:?}: echo replies read back");
                tun.close();
                // Let the next device reuse the name space cleanly.
                drop(tun);
                let _ = i;
            }
        }
    });
}

#[test]
fn timeouts_close_and_bad_input() {
    in_netns("tun timeouts", || {
        for cfg in backends() {
            let tun = Arc::new(Tun::create("", &cfg).unwrap());
            let mut slots = vec![Packet::with_capacity(2048)];
            assert_eq!(tun.read(&mut slots, Wait::from_ms(0)).unwrap_err().kind, ErrorKind::WouldBlock);
            let t = Instant::now();
            assert_eq!(tun.read(&mut slots, Wait::from_ms(50)).unwrap_err().kind, ErrorKind::Timeout);
            assert!(t.elapsed() >= Duration::from_millis(45));
            let mut small = vec![Packet::with_capacity(100)];
            assert_eq!(tun.read(&mut small, Wait::from_ms(0)).unwrap_err().kind, ErrorKind::BufferTooSmall);
            assert_eq!(tun.set_mtu(10).unwrap_err().kind, ErrorKind::InvalidArgument);
            let (n, e) = tun.write(&[&b"\x00not ip"[..]]);
            assert_eq!((n, e.map(|e| e.kind)), (0, Some(ErrorKind::InvalidArgument)));
            let reader = {
                let tun = tun.clone();
                std::thread::spawn(move || {
                    let mut slots = vec![Packet::with_capacity(2048)];
                    tun.read(&mut slots, Wait::Forever).unwrap_err().kind
                })
            };
            std::thread::sleep(Duration::from_millis(50));
            let t = Instant::now();
            tun.close();
            assert_eq!(reader.join().unwrap(), ErrorKind::Closed);
            assert!(t.elapsed() < Duration::from_millis(100), "{cfg:?}: close took {:?}", t.elapsed());
            assert_eq!(tun.mtu().unwrap_err().kind, ErrorKind::Closed);
        }
        assert_eq!(Tun::create("a-name-longer-than-15", &TunConfig::default()).err().unwrap().kind, ErrorKind::InvalidArgument);
        assert_eq!(Tun::from_fd(-1, &TunConfig::default()).err().unwrap().kind, ErrorKind::InvalidArgument);
        let (not_tun, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&not_tun);
        assert_eq!(Tun::from_fd(raw, &TunConfig::default()).err().unwrap().kind, ErrorKind::InvalidArgument);
        // Still ours after the failure: a write works.
        std::io::Write::write_all(&mut &not_tun, b"x").unwrap();
    });
}
