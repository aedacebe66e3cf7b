//! UDP handle behaviour through the safe Rust API, on both backends.

use meshring::error::ErrorKind;
use meshring::sync::Wait;
use meshring::sys::{Outgoing, Payload};
use meshring::udp::{Backend, BackendChoice, Datagram, UdpConfig, UdpSocket};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(backend: &UdpConfig) -> UdpConfig {
    backend.clone()
}

/// Every receive path: batch, io_uring readiness + recvmmsg, io_uring multishot.
fn backends() -> Vec<UdpConfig> {
    let mut v = vec![UdpConfig { backend: BackendChoice::Batch, ..UdpConfig::default() }];
    if meshring::uring::probe().unusable.is_none() {
        v.push(UdpConfig { backend: BackendChoice::Uring, ..UdpConfig::default() });
        v.push(UdpConfig { backend: BackendChoice::Uring, multishot_recv: true, ..UdpConfig::default() });
    } else {
        eprintln!("skipping io_uring variants: {:?}", meshring::uring::probe().unusable);
    }
    v
}

fn pair(bind: &str, backend: &UdpConfig) -> (UdpSocket, UdpSocket) {
    let addr: SocketAddr = bind.parse().unwrap();
    (UdpSocket::bind(&addr, &config(&backend)).unwrap(), UdpSocket::bind(&addr, &config(&backend)).unwrap())
}

fn send_all(s: &UdpSocket, to: SocketAddr, payloads: &[Vec<u8>]) {
    let msgs: Vec<Outgoing> = payloads.iter().map(|p| Outgoing { payload: Payload::One(p), addr: to, segment_size: 0, local: None }).collect();
    let (sent, err) = s.send(&msgs, Wait::from_ms(1000));
    assert_eq!(sent, payloads.len(), "{err:?}");
    assert!(err.is_none());
}

fn recv_n(s: &UdpSocket, n: usize) -> Vec<Datagram> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} datagrams arrived", got.len());
        let mut slots: Vec<Datagram> = (0..(n - got.len())).map(|_| Datagram::with_capacity(2048)).collect();
        let k = s.recv(&mut slots, Wait::from_ms(1000)).unwrap();
        got.extend(slots.into_iter().take(k));
    }
    got
}

#[test]
fn echo_batches_v4_and_v6_on_both_backends() {
    for backend in backends() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let (a, b) = pair(bind, &backend);
            let payloads: Vec<Vec<u8>> = (0..64u32).map(|i| i.to_be_bytes().repeat(1 + i as usize % 300)).collect();
            send_all(&a, b.local_addr().unwrap(), &payloads);
            let got = recv_n(&b, 64);
            let mut seen: Vec<Vec<u8>> = got.iter().map(|d| d.data().to_vec()).collect();
            seen.sort();
            let mut want = payloads.clone();
            want.sort();
            assert_eq!(seen, want, "{backend:?} {bind}");
            assert!(got.iter().all(|d| d.addr == Some(a.local_addr().unwrap())));
            let st = b.stats();
            assert_eq!(st.rx_datagrams, 64);
            assert_eq!(st.rx_bytes as usize, payloads.iter().map(Vec::len).sum::<usize>());
            assert_eq!(a.stats().tx_datagrams, 64);
        }
    }
}

#[test]
fn dual_stack_maps_v4_peers_to_family_4() {
    for backend in backends() {
        let server = UdpSocket::bind(&"[::]:0".parse().unwrap(), &config(&backend)).unwrap();
        let port = server.local_addr().unwrap().port();
        let client = UdpSocket::bind(&"127.0.0.1:0".parse().unwrap(), &config(&backend)).unwrap();
        send_all(&client, SocketAddr::from(([127, 0, 0, 1], port)), &[b"hi".to_vec()]);
        let got = recv_n(&server, 1);
        assert_eq!(got[0].addr, Some(client.local_addr().unwrap()));
        // And back: a family-4 destination from the v6 socket.
        send_all(&server, client.local_addr().unwrap(), &[b"yo".to_vec()]);
        assert_eq!(recv_n(&client, 1)[0].data(), b"yo");
    }
}

#[test]
fn timeouts_follow_the_abi() {
    for backend in backends() {
        let (a, _) = pair("127.0.0.1:0", &backend);
        let mut slots = vec![Datagram::with_capacity(64)];
        assert_eq!(a.recv(&mut slots, Wait::from_ms(0)).unwrap_err().kind, ErrorKind::WouldBlock);
        let t = Instant::now();
        assert_eq!(a.recv(&mut slots, Wait::from_ms(50)).unwrap_err().kind, ErrorKind::Timeout);
        assert!(t.elapsed() >= Duration::from_millis(45), "{backend:?} returned after {:?}", t.elapsed());
    }
}

#[test]
fn close_wakes_a_blocked_receiver_and_sender_side_stays_usable_until_then() {
    for backend in backends() {
        let (a, _) = pair("127.0.0.1:0", &backend);
        let local = a.local_addr().unwrap();
        let a = Arc::new(a);
        let reader = {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut slots = vec![Datagram::with_capacity(64)];
                let t = Instant::now();
                let e = a.recv(&mut slots, Wait::Forever).unwrap_err();
                (e.kind, t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        a.close();
        let close_took = t.elapsed();
        let (kind, _) = reader.join().unwrap();
        assert_eq!(kind, ErrorKind::Closed);
        assert!(close_took < Duration::from_millis(100), "{backend:?} close took {close_took:?}");
        a.close();
        let mut slots = vec![Datagram::with_capacity(64)];
        assert_eq!(a.recv(&mut slots, Wait::from_ms(0)).unwrap_err().kind, ErrorKind::Closed);
        assert_eq!(a.local_addr().unwrap_err().kind, ErrorKind::Closed);
        let (sent, err) = a.send(&[Outgoing { payload: Payload::One(b"x"), addr: local, segment_size: 0, local: None }], Wait::Never);
        assert_eq!((sent, err.map(|e| e.kind)), (0, Some(ErrorKind::Closed)));
    }
}

#[test]
fn too_small_buffer_keeps_the_datagram() {
    for backend in backends() {
        let (a, b) = pair("127.0.0.1:0", &backend);
        send_all(&a, b.local_addr().unwrap(), &[vec![7u8; 1000], vec![8u8; 10]]);
        std::thread::sleep(Duration::from_millis(20));
        let mut small = vec![Datagram::with_capacity(100)];
        let e = b.recv(&mut small, Wait::from_ms(1000)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BufferTooSmall, "{backend:?}: {e}");
        let got = recv_n(&b, 2);
        assert_eq!(got[0].data(), &[7u8; 1000][..]);
        assert_eq!(got[1].data(), &[8u8; 10][..]);
    }
}

#[test]
fn gso_send_and_gro_receive_round_trip() {
    for backend in backends() {
        let cfg = UdpConfig { gso: true, gro: true, ..backend.clone() };
        let a = match UdpSocket::bind(&"127.0.0.1:0".parse().unwrap(), &cfg) {
            Ok(s) => s,
            Err(e) if e.kind == ErrorKind::Unsupported => {
                eprintln!("skipping GSO/GRO: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let b = UdpSocket::bind(&"127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
        let segs = 20usize;
        let payload: Vec<u8> = (0..segs * 1200).map(|i| (i / 1200) as u8).collect();
        let (sent, err) = a.send(&[Outgoing { payload: Payload::One(&payload), addr: b.local_addr().unwrap(), segment_size: 1200, local: None }], Wait::from_ms(1000));
        assert_eq!(sent, 1, "{err:?}");
        let mut total = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while total.len() < payload.len() && Instant::now() < deadline {
            let mut slots = vec![Datagram::with_capacity(65535)];
            let n = b.recv(&mut slots, Wait::from_ms(1000)).unwrap();
            assert_eq!(n, 1);
            let d = &slots[0];
            if d.len > 1200 {
                assert_eq!(d.segment_size, 1200, "{backend:?}: coalesced datagram must say its segment size");
            }
            total.extend_from_slice(d.data());
        }
        assert_eq!(total, payload, "{backend:?}");
        assert!(b.stats().rx_datagrams < segs as u64, "{backend:?}: GRO coalesced nothing");
    }
}

#[test]
fn auto_backend_picks_uring_where_it_works() {
    let s = UdpSocket::bind(&"127.0.0.1:0".parse().unwrap(), &UdpConfig::default()).unwrap();
    if std::env::var("MESHRING_BACKEND").as_deref() == Ok("batch") || meshring::uring::probe().unusable.is_some() {
        assert_eq!(s.backend(), Backend::Batch);
    } else {
        assert_eq!(s.backend(), Backend::Uring);
    }
}

#[test]
fn single_shot_receive_path_echoes() {
    if meshring::uring::probe().unusable.is_some() {
        eprintln!("skipping: io_uring unusable");
        return;
    }
    let cfg = UdpConfig { backend: BackendChoice::Uring, force_single_shot: true, ..UdpConfig::default() };
    let a = UdpSocket::bind(&"127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let b = UdpSocket::bind(&"127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let payloads: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_le_bytes().to_vec()).collect();
    for chunk in payloads.chunks(50) {
        send_all(&a, b.local_addr().unwrap(), chunk);
        let got = recv_n(&b, chunk.len());
        assert_eq!(got.len(), chunk.len());
    }
    assert_eq!(b.stats().rx_datagrams, 200);
}

#[test]
fn oversize_datagrams_are_dropped_counted_and_not_reported() {
    for backend in backends() {
        let (a, b) = pair("127.0.0.1:0", &backend);
        send_all(&a, b.local_addr().unwrap(), &[vec![1u8; 3000], b"after".to_vec()]);
        std::thread::sleep(Duration::from_millis(20));
        let mut slots = vec![Datagram::with_capacity(65535)];
        let n = b.recv(&mut slots, Wait::from_ms(1000)).unwrap();
        assert_eq!(n, 1, "{backend:?}");
        assert_eq!(slots[0].data(), b"after", "{backend:?}");
        assert_eq!(b.stats().rx_oversize, 1, "{backend:?}");
        assert_eq!(b.stats().rx_datagrams, 1, "{backend:?}");
        send_all(&a, b.local_addr().unwrap(), &[vec![1u8; 3000]]);
        let e = b.recv(&mut slots, Wait::from_ms(100)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{backend:?}");
    }
}

/// utime + stime of the calling thread, in clock ticks (1/100 s).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn blocked_receive_burns_no_cpu() {
    for backend in backends() {
        let (a, _) = pair("127.0.0.1:0", &backend);
        let before = thread_cpu_ticks();
        let mut slots = vec![Datagram::with_capacity(64)];
        assert_eq!(a.recv(&mut slots, Wait::from_ms(600)).unwrap_err().kind, ErrorKind::Timeout);
        let used = thread_cpu_ticks() - before;
        // A busy wait would burn ~60 ticks; sleeping in the kernel burns ~0.
        assert!(used <= 5, "{backend:?}: {used} ticks of CPU while blocked 600 ms");
    }
}
