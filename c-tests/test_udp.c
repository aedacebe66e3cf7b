/*
 * UDP data path on both backends: v4/v6 echo in batches of 1 and 64,
 * GSO/GRO round trip, every timeout mode, mr_udp_from_fd with a real
 * socket, mr_udp_fd readiness, and mr_msg: a GSO datagram gathered from
 * separate packet buffers, the local address of received datagrams
 * (MR_UDP_PKTINFO), replies sent from a chosen source, SO_MARK and
 * wireguard-go's socket buffer size.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "test_util.h"

#define SLOT_CAP 2048
#define MAX_BATCH 64
#define MAGIC 0x6d72u

static const uint32_t k_backends[3] = {MR_BACKEND_URING, TEST_URING_MULTISHOT, MR_BACKEND_BATCH};

/* Payload i of a round: 8-byte header (magic, round, index, length) + pattern. */
static size_t payload_len(size_t i)
{
    return 16 + (i * 37) % 1000;
}

static void fill_payload(uint8_t *p, size_t len, unsigned round, size_t i)
{
    size_t j;
    p[0] = (uint8_t)(MAGIC >> 8);
    p[1] = (uint8_t)(MAGIC & 0xff);
    p[2] = (uint8_t)round;
    p[3] = (uint8_t)i;
    p[4] = (uint8_t)(len >> 8);
    p[5] = (uint8_t)(len & 0xff);
    p[6] = 0;
    p[7] = 0;
    for (j = 8; j < len; j++) {
        p[j] = (uint8_t)(j * 31 + i * 7 + round);
    }
}

/* Returns the index, or -1 if the payload is not an intact one of this round. */
static int check_payload(const uint8_t *p, size_t len, unsigned round, size_t n)
{
    size_t i, j, want;
    if (len < 8 || p[0] != (uint8_t)(MAGIC >> 8) || p[1] != (uint8_t)(MAGIC & 0xff) ||
        p[2] != (uint8_t)round) {
        return -1;
    }
    i = p[3];
    want = ((size_t)p[4] << 8) | p[5];
    if (i >= n || want != len || len != payload_len(i)) {
        return -1;
    }
    for (j = 8; j < len; j++) {
        if (p[j] != (uint8_t)(j * 31 + i * 7 + round)) {
            return -1;
        }
    }
    return (int)i;
}

/*
 * Receives exactly n datagrams of the given round on u (2 s deadline), each
 * from `from`. Fills rx[] with what arrived (buffers from bufs). Returns the
 * number received.
 */
static size_t recv_round(mr_udp *u, mr_datagram *rx, uint8_t (*bufs)[SLOT_CAP], size_t n,
                         unsigned round, const mr_addr *from, const char *expect_text)
{
    size_t got = 0, k, r;
    int seen[MAX_BATCH];
    double deadline = now_ms() + within_ms(3000);
    char txt[64];
    memset(seen, 0, sizeof seen);
    while (got < n && now_ms() < deadline) {
        mr_status st;
        for (k = got; k < n; k++) {
            memset(&rx[k], 0, sizeof rx[k]);
            memset(&rx[k].addr, 0xEE, sizeof rx[k].addr);
            rx[k].buf = bufs[k];
            rx[k].cap = SLOT_CAP;
            rx[k].segment_size = 0xBEEF;
        }
        r = 0;
        st = mr_udp_recv(u, rx + got, n - got, 200, &r);
        if (st == MR_TIMEOUT) {
            continue;
        }
        if (!CHECK_ST(st, MR_OK)) {
            break;
        }
        if (!CHECK(r >= 1 && r <= n - got, "received %zu of %zu slots", r, n - got)) {
            break;
        }
        for (k = got; k < got + r; k++) {
            int idx = check_payload(rx[k].buf, rx[k].len, round, n);
            if (!CHECK(idx >= 0, "datagram %zu (len %zu) corrupted", k, rx[k].len)) {
                continue;
            }
            CHECK(!seen[idx], "datagram %d received twice", idx);
            seen[idx] = 1;
            CHECK(rx[k].segment_size == 0, "segment_size %u without GRO",
                  (unsigned)rx[k].segment_size);
            CHECK(addr_equal(&rx[k].addr, from), "source %s is not the sender",
                  fmt_addr(&rx[k].addr, txt, sizeof txt));
            fmt_addr(&rx[k].addr, txt, sizeof txt);
            CHECK(strcmp(txt, expect_text) == 0, "source formats as \"%s\", want \"%s\"", txt,
                  expect_text);
        }
        got += r;
    }
    CHECK(got == n, "received %zu of %zu datagrams", got, n);
    return got;
}

static void echo_test(uint32_t backend, const char *bind_addr, size_t n)
{
    static uint8_t txbufs[MAX_BATCH][SLOT_CAP];
    static uint8_t rxbufs[MAX_BATCH][SLOT_CAP];
    static uint8_t rxbufs2[MAX_BATCH][SLOT_CAP];
    mr_datagram tx[MAX_BATCH], rx[MAX_BATCH], rx2[MAX_BATCH];
    mr_udp *a = NULL, *b = NULL;
    mr_addr la, lb;
    mr_udp_counters sa, sb;
    char ta[64], tb[64], expect[64];
    size_t i, sent, got, bytes = 0;
    unsigned round = (unsigned)n;
    const char *host = strchr(bind_addr, '[') != NULL ? "[::1]" : "127.0.0.1";

    printf("-- echo %s %s batch %zu\n", backend_name(backend), bind_addr, n);
    if (BIND_WITH(bind_addr, backend, 0, &a) <= 0) {
        return;
    }
    if (BIND_WITH(bind_addr, backend, 0, &b) <= 0) {
        mr_udp_free(a);
        return;
    }
    CHECK_ST(mr_udp_local_addr(a, &la), MR_OK);
    CHECK_ST(mr_udp_local_addr(b, &lb), MR_OK);
    CHECK(la.port != 0 && lb.port != 0 && la.port != lb.port, "ports %u %u", (unsigned)la.port,
          (unsigned)lb.port);
    CHECK(la.family == (host[0] == '[' ? 6 : 4), "family %u", (unsigned)la.family);
    fmt_addr(&la, ta, sizeof ta);
    fmt_addr(&lb, tb, sizeof tb);
    snprintf(expect, sizeof expect, "%s:%u", host, (unsigned)la.port);
    CHECK(strcmp(ta, expect) == 0, "local addr \"%s\", want \"%s\"", ta, expect);

    /* a -> b */
    for (i = 0; i < n; i++) {
        size_t len = payload_len(i);
        fill_payload(txbufs[i], len, round, i);
        memset(&tx[i], 0, sizeof tx[i]);
        tx[i].buf = txbufs[i];
        tx[i].cap = SLOT_CAP;
        tx[i].len = len;
        tx[i].addr = lb;
        bytes += len;
    }
    sent = 999;
    CHECK_ST(mr_udp_send(a, tx, n, 1000, &sent), MR_OK);
    CHECK_EQ_U(sent, n);
    got = recv_round(b, rx, rxbufs, n, round, &la, ta);

    /* b echoes every datagram back to its source. */
    for (i = 0; i < got; i++) {
        rx[i].segment_size = 0;
        /* rx[i].addr is the source, rx[i].len the length. */
    }
    sent = 999;
    if (got > 0) {
        CHECK_ST(mr_udp_send(b, rx, got, 1000, &sent), MR_OK);
        CHECK_EQ_U(sent, got);
    }
    recv_round(a, rx2, rxbufs2, got, round, &lb, tb);

    /* Nothing more is pending on either side. */
    {
        mr_datagram d;
        uint8_t tmp[64];
        CHECK_ST(recv_one(a, tmp, sizeof tmp, 0, &d), MR_WOULD_BLOCK);
        CHECK_ST(recv_one(b, tmp, sizeof tmp, 0, &d), MR_WOULD_BLOCK);
    }

    /* Counters. */
    if (CHECK_ST(mr_udp_stats(a, &sa), MR_OK) && CHECK_ST(mr_udp_stats(b, &sb), MR_OK)) {
        CHECK_EQ_U(sa.tx_datagrams, n);
        CHECK_EQ_U(sa.tx_bytes, bytes);
        CHECK_EQ_U(sb.rx_datagrams, n);
        CHECK_EQ_U(sb.rx_bytes, bytes);
        CHECK_EQ_U(sb.tx_datagrams, n);
        CHECK_EQ_U(sa.rx_datagrams, n);
        CHECK(sa.tx_calls >= 1 && sa.tx_calls <= n, "tx_calls %llu",
              (unsigned long long)sa.tx_calls);
        CHECK(sb.rx_calls >= 1 && sb.rx_calls <= n, "rx_calls %llu",
              (unsigned long long)sb.rx_calls);
        CHECK_EQ_U(sa.tx_errors, 0);
        CHECK_EQ_U(sb.rx_oversize, 0);
    }
    CHECK_ST(mr_udp_close(a), MR_OK);
    CHECK_ST(mr_udp_close(b), MR_OK);
    mr_udp_free(a);
    mr_udp_free(b);
}

/* An "[::]" socket is dual-stack: a v4 peer appears with family 4. */
static void dual_stack_test(uint32_t backend)
{
    mr_udp *six = NULL, *four = NULL;
    mr_addr l6, l4, dst;
    uint8_t msg[32] = "dual-stack", buf[128];
    mr_datagram d;
    char txt[64];

    printf("-- dual stack %s\n", backend_name(backend));
    if (BIND_WITH("[::]:0", backend, 0, &six) <= 0) {
        return;
    }
    if (BIND_WITH("127.0.0.1:0", backend, 0, &four) <= 0) {
        mr_udp_free(six);
        return;
    }
    CHECK_ST(mr_udp_local_addr(six, &l6), MR_OK);
    CHECK_ST(mr_udp_local_addr(four, &l4), MR_OK);
    CHECK_ST(mr_addr_parse("127.0.0.1:1", &dst), MR_OK);
    dst.port = l6.port;
    CHECK_ST(send_one(four, msg, sizeof msg, &dst, 1000), MR_OK);
    if (CHECK_ST(recv_one(six, buf, sizeof buf, 2000, &d), MR_OK)) {
        CHECK(d.len == sizeof msg && memcmp(buf, msg, sizeof msg) == 0, "payload");
        CHECK(d.addr.family == 4 && addr_equal(&d.addr, &l4), "source %s",
              fmt_addr(&d.addr, txt, sizeof txt));
        /* Reply to the family-4 address through the v6 socket. */
        CHECK_ST(send_one(six, msg, sizeof msg, &d.addr, 1000), MR_OK);
        if (CHECK_ST(recv_one(four, buf, sizeof buf, 2000, &d), MR_OK)) {
            CHECK(d.addr.family == 4 && d.addr.port == l6.port, "reply source %s",
                  fmt_addr(&d.addr, txt, sizeof txt));
        }
    }
    mr_udp_free(six);
    mr_udp_free(four);
}

static void gso_gro_test(uint32_t backend)
{
    enum { SEG = 1200, NSEG = 20, TOTAL = SEG * NSEG, RXCAP = 65535, NRX = 4 };
    static uint8_t txb[TOTAL], got[TOTAL];
    static uint8_t rxb[NRX][RXCAP];
    mr_udp *a = NULL, *b = NULL;
    mr_addr lb, la;
    mr_datagram tx, rx[NRX];
    size_t i, sent, total = 0, r, datagrams = 0;
    int coalesced = 0, bad_seg = 0;
    double deadline;
    int ra;

    printf("-- GSO/GRO %s\n", backend_name(backend));
    ra = BIND_WITH("127.0.0.1:0", backend, MR_UDP_GSO | MR_UDP_GRO, &a);
    if (ra <= 0) {
        return;
    }
    if (BIND_WITH("127.0.0.1:0", backend, MR_UDP_GSO | MR_UDP_GRO, &b) <= 0) {
        mr_udp_free(a);
        return;
    }
    CHECK_ST(mr_udp_local_addr(a, &la), MR_OK);
    CHECK_ST(mr_udp_local_addr(b, &lb), MR_OK);
    for (i = 0; i < TOTAL; i++) {
        txb[i] = (uint8_t)((i * 2654435761u) >> 13);
    }
    memset(&tx, 0, sizeof tx);
    tx.buf = txb;
    tx.cap = TOTAL;
    tx.len = TOTAL;
    tx.addr = lb;
    tx.segment_size = SEG;
    sent = 99;
    {
        mr_status st = mr_udp_send(a, &tx, 1, 1000, &sent);
        if (st == MR_UNSUPPORTED) {
            char eb[256];
            printf("SKIP GSO %s: %s\n", backend_name(backend), last_err(eb, sizeof eb));
            mr_udp_free(a);
            mr_udp_free(b);
            return;
        }
        CHECK_ST(st, MR_OK);
        CHECK_EQ_U(sent, 1);
    }
    deadline = now_ms() + within_ms(3000);
    while (total < TOTAL && now_ms() < deadline) {
        mr_status st;
        memset(rx, 0, sizeof rx);
        for (i = 0; i < NRX; i++) {
            rx[i].buf = rxb[i];
            rx[i].cap = RXCAP;
        }
        r = 0;
        st = mr_udp_recv(b, rx, NRX, 200, &r);
        if (st == MR_TIMEOUT) {
            continue;
        }
        if (!CHECK_ST(st, MR_OK)) {
            break;
        }
        for (i = 0; i < r; i++) {
            datagrams++;
            if (!CHECK(total + rx[i].len <= TOTAL, "too many bytes: %zu + %zu", total, rx[i].len)) {
                break;
            }
            memcpy(got + total, rx[i].buf, rx[i].len);
            total += rx[i].len;
            if (rx[i].segment_size == SEG && rx[i].len > SEG) {
                coalesced++;
            }
            if (rx[i].segment_size != 0 && rx[i].segment_size != SEG) {
                bad_seg++;
            }
            CHECK(addr_equal(&rx[i].addr, &la), "GRO source address");
        }
    }
    printf("     received %zu bytes in %zu datagrams, %d coalesced\n", total, datagrams,
           coalesced);
    CHECK_EQ_U(total, TOTAL);
    CHECK(memcmp(got, txb, TOTAL) == 0, "GSO/GRO bytes differ");
    CHECK(coalesced >= 1, "no datagram arrived coalesced with segment_size %d", SEG);
    CHECK(bad_seg == 0, "%d datagrams with a wrong segment_size", bad_seg);
    {
        mr_udp_counters s;
        CHECK_ST(mr_udp_stats(b, &s), MR_OK);
        CHECK_EQ_U(s.rx_bytes, TOTAL);
        CHECK_EQ_U(s.rx_oversize, 0);
    }
    mr_udp_free(a);
    mr_udp_free(b);
}

struct delayed_send {
    mr_udp *from;
    mr_addr to;
    int delay_ms;
    mr_status st;
};

static void *delayed_sender(void *p)
{
    struct delayed_send *s = p;
    static const uint8_t msg[] = "late datagram";
    sleep_ms(s->delay_ms);
    s->st = send_one(s->from, msg, sizeof msg, &s->to, 1000);
    return NULL;
}

static void timeout_test(uint32_t backend)
{
    mr_udp *u = NULL, *peer = NULL;
    uint8_t buf[256];
    mr_datagram d;
    double t0, el;
    pthread_t th;
    struct delayed_send ds;
    mr_status st;

    printf("-- timeouts %s\n", backend_name(backend));
    if (BIND_WITH("127.0.0.1:0", backend, 0, &u) <= 0) {
        return;
    }
    if (BIND_WITH("127.0.0.1:0", backend, 0, &peer) <= 0) {
        mr_udp_free(u);
        return;
    }
    /* 0: never blocks. */
    t0 = now_ms();
    CHECK_FAIL(recv_one(u, buf, sizeof buf, 0, &d), MR_WOULD_BLOCK);
    el = now_ms() - t0;
    CHECK(el < within_ms(20), "timeout 0 took %.1f ms", el);

    /* 50: MR_TIMEOUT after >= ~45 ms and not much later. */
    t0 = now_ms();
    CHECK_FAIL(recv_one(u, buf, sizeof buf, 50, &d), MR_TIMEOUT);
    el = now_ms() - t0;
    CHECK(el >= 45.0, "timeout 50 returned after %.1f ms", el);
    CHECK(el < 50.0 + within_ms(250), "timeout 50 returned after %.1f ms", el);
    if (g_verbose) {
        printf("     timeout 50 -> %.1f ms\n", el);
    }

    /* -1: waits until a datagram arrives from another thread after 20 ms. */
    if (uring_blocking_skipped(backend, "recv timeout -1 woken by a datagram from another thread")) {
        goto after_forever;
    }
    memset(&ds, 0, sizeof ds);
    ds.from = peer;
    ds.delay_ms = 20;
    ds.st = MR_PANIC;
    CHECK_ST(mr_udp_local_addr(u, &ds.to), MR_OK);
    t0 = now_ms();
    CHECK(pthread_create(&th, NULL, delayed_sender, &ds) == 0, "pthread_create");
    st = recv_one(u, buf, sizeof buf, -1, &d);
    el = now_ms() - t0;
    pthread_join(th, NULL);
    CHECK_ST(ds.st, MR_OK);
    if (CHECK_ST(st, MR_OK)) {
        CHECK(d.len == sizeof "late datagram" && memcmp(buf, "late datagram", d.len) == 0,
              "payload");
    }
    CHECK(el >= 15.0, "timeout -1 returned after %.1f ms (before the send)", el);
    CHECK(el < 20.0 + within_ms(500), "timeout -1 returned after %.1f ms", el);

after_forever:
    CHECK_ST(mr_udp_local_addr(u, &ds.to), MR_OK);
    /* > 0 with data already waiting returns at once. */
    CHECK_ST(send_one(peer, buf, 10, &ds.to, 1000), MR_OK);
    sleep_ms(20);
    t0 = now_ms();
    CHECK_ST(recv_one(u, buf, sizeof buf, 5000, &d), MR_OK);
    el = now_ms() - t0;
    CHECK(el < within_ms(100), "ready datagram took %.1f ms", el);

    /* Send with timeout 0 on an idle socket succeeds. */
    CHECK_ST(send_one(peer, buf, 10, &ds.to, 0), MR_OK);
    CHECK_ST(recv_one(u, buf, sizeof buf, 1000, &d), MR_OK);
    mr_udp_free(u);
    mr_udp_free(peer);
}

static void from_fd_test(uint32_t backend, int family)
{
    int fd;
    mr_udp_config cfg;
    mr_udp *u = NULL, *peer = NULL;
    mr_addr lu, lp;
    uint8_t msg[100], buf[256];
    mr_datagram d;
    mr_status st;
    unsigned short port;

    printf("-- from_fd %s v%d\n", backend_name(backend), family);
    fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (!CHECK(fd >= 0, "socket: %s", strerror(errno))) {
        return;
    }
    if (family == 4) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind: %s", strerror(errno));
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        port = ntohs(sa.sin_port);
    } else {
        struct sockaddr_in6 sa;
        socklen_t sl = sizeof sa;
        memset(&sa, 0, sizeof sa);
        sa.sin6_family = AF_INET6;
        sa.sin6_addr = in6addr_loopback;
        CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind: %s", strerror(errno));
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        port = ntohs(sa.sin6_port);
    }
    CHECK_ST(mr_udp_config_init(&cfg), MR_OK);
    config_for(&cfg, backend);
    st = mr_udp_from_fd(fd, &cfg, &u);
    if (st == MR_UNSUPPORTED) {
        char eb[256];
        printf("SKIP %s: %s (from_fd)\n", backend_name(backend), last_err(eb, sizeof eb));
        close(fd);
        return;
    }
    if (!CHECK_ST(st, MR_OK)) {
        close(fd);
        return;
    }
    CHECK(mr_udp_backend(u) == (mr_backend)real_backend(backend), "backend %d", (int)mr_udp_backend(u));
    CHECK_ST(mr_udp_local_addr(u, &lu), MR_OK);
    CHECK(lu.port == port && lu.family == family, "local addr port %u family %u", lu.port,
          lu.family);
    if (BIND_WITH(family == 4 ? "127.0.0.1:0" : "[::1]:0", backend, 0, &peer) > 0) {
        CHECK_ST(mr_udp_local_addr(peer, &lp), MR_OK);
        memset(msg, 'F', sizeof msg);
        CHECK_ST(send_one(peer, msg, sizeof msg, &lu, 1000), MR_OK);
        if (CHECK_ST(recv_one(u, buf, sizeof buf, 2000, &d), MR_OK)) {
            CHECK(d.len == sizeof msg && memcmp(buf, msg, sizeof msg) == 0, "payload");
            CHECK(addr_equal(&d.addr, &lp), "source");
            CHECK_ST(send_one(u, buf, d.len, &d.addr, 1000), MR_OK);
            if (CHECK_ST(recv_one(peer, buf, sizeof buf, 2000, &d), MR_OK)) {
                CHECK(d.len == sizeof msg && memcmp(buf, msg, sizeof msg) == 0, "echo payload");
                CHECK(addr_equal(&d.addr, &lu), "echo source");
            }
        }
        mr_udp_free(peer);
    }
    CHECK(fcntl(fd, F_GETFD) != -1, "handle's fd closed before free");
    mr_udp_free(u);
    CHECK(fcntl(fd, F_GETFD) == -1, "fd %d still open after mr_udp_free (handle owns it)", fd);
}

/* An unbound UDP socket is accepted too ("bound or not yet used"). */
static void from_fd_unbound_test(uint32_t backend)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    mr_udp_config cfg;
    mr_udp *u = NULL, *peer = NULL;
    mr_addr lp;
    uint8_t buf[64];
    mr_datagram d;
    mr_status st;

    printf("-- from_fd unbound %s\n", backend_name(backend));
    CHECK_ST(mr_udp_config_init(&cfg), MR_OK);
    config_for(&cfg, backend);
    st = mr_udp_from_fd(fd, &cfg, &u);
    if (st == MR_UNSUPPORTED) {
        close(fd);
        return;
    }
    if (!CHECK_ST(st, MR_OK)) {
        close(fd);
        return;
    }
    if (BIND_WITH("127.0.0.1:0", backend, 0, &peer) > 0) {
        CHECK_ST(mr_udp_local_addr(peer, &lp), MR_OK);
        CHECK_ST(send_one(u, (const uint8_t *)"hello", 5, &lp, 1000), MR_OK);
        if (CHECK_ST(recv_one(peer, buf, sizeof buf, 2000, &d), MR_OK)) {
            CHECK(d.len == 5 && memcmp(buf, "hello", 5) == 0, "payload");
            /* Reply reaches the auto-bound socket. */
            CHECK_ST(send_one(peer, buf, 5, &d.addr, 1000), MR_OK);
            CHECK_ST(recv_one(u, buf, sizeof buf, 2000, &d), MR_OK);
        }
        mr_udp_free(peer);
    }
    mr_udp_free(u);
}

static void fd_readiness_test(uint32_t backend)
{
    mr_udp *u = NULL, *peer = NULL;
    mr_addr lu;
    uint8_t buf[256];
    mr_datagram d;
    struct pollfd p;
    int fd, rc, round, drained;

    printf("-- readiness fd %s\n", backend_name(backend));
    if (BIND_WITH("127.0.0.1:0", backend, 0, &u) <= 0) {
        return;
    }
    if (BIND_WITH("127.0.0.1:0", backend, 0, &peer) <= 0) {
        mr_udp_free(u);
        return;
    }
    fd = mr_udp_fd(u);
    CHECK(fd >= 0, "mr_udp_fd = %d", fd);
    CHECK(mr_udp_fd(u) == fd, "mr_udp_fd not stable");
    CHECK_ST(mr_udp_local_addr(u, &lu), MR_OK);
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    rc = poll(&p, 1, 0);
    /* Informational only: the uring eventfd may be spuriously readable. */
    printf("     idle poll(0): rc %d revents 0x%x\n", rc, (unsigned)p.revents);
    for (round = 0; round < 3; round++) {
        memset(buf, 'a' + round, sizeof buf);
        CHECK_ST(send_one(peer, buf, 50 + (size_t)round, &lu, 1000), MR_OK);
        p.revents = 0;
        rc = poll(&p, 1, (int)within_ms(1000));
        CHECK(rc == 1 && (p.revents & POLLIN), "round %d: poll rc %d revents 0x%x", round, rc,
              (unsigned)p.revents);
        if (CHECK_ST(recv_one(u, buf, sizeof buf, 0, &d), MR_OK)) {
            CHECK(d.len == 50 + (size_t)round && buf[0] == 'a' + round, "payload round %d",
                  round);
        }
        /* Drain until MR_WOULD_BLOCK as the header prescribes. */
        drained = 0;
        while (recv_one(u, buf, sizeof buf, 0, &d) == MR_OK && drained < 100) {
            drained++;
        }
        CHECK_EQ_U(drained, 0);
        CHECK_ST(recv_one(u, buf, sizeof buf, 0, &d), MR_WOULD_BLOCK);
    }
    /* Batch: several datagrams, one poll, drain them all. */
    for (round = 0; round < 5; round++) {
        CHECK_ST(send_one(peer, buf, 20, &lu, 1000), MR_OK);
    }
    p.revents = 0;
    rc = poll(&p, 1, (int)within_ms(1000));
    CHECK(rc == 1 && (p.revents & POLLIN), "batch poll rc %d", rc);
    drained = 0;
    {
        double deadline = now_ms() + within_ms(1000);
        while (drained < 5 && now_ms() < deadline) {
            mr_status st = recv_one(u, buf, sizeof buf, 0, &d);
            if (st == MR_OK) {
                drained++;
            } else if (st == MR_WOULD_BLOCK) {
                p.revents = 0;
                poll(&p, 1, 100);
            } else {
                CHECK_ST(st, MR_OK);
                break;
            }
        }
    }
    CHECK_EQ_U(drained, 5);
    CHECK_ST(recv_one(u, buf, sizeof buf, 0, &d), MR_WOULD_BLOCK);
    /* Informational: is the fd quiet again once drained? (not a guarantee) */
    p.revents = 0;
    rc = poll(&p, 1, 0);
    printf("     drained poll(0): rc %d revents 0x%x\n", rc, (unsigned)p.revents);
    mr_udp_free(u);
    mr_udp_free(peer);
}

static mr_addr ip_addr(const char *text)
{
    mr_addr a;
    memset(&a, 0, sizeof a);
    CHECK_ST(mr_addr_parse(text, &a), MR_OK);
    return a;
}

/* Receives until `want` bytes arrived (or 3 s), into `got`; returns the
   first slot's local address and interface. */
static size_t recv_msgs(mr_udp *u, uint8_t *got, size_t want, mr_addr *local, uint32_t *ifindex, mr_addr *from,
                        int *coalesced)
{
    enum { NRX = 4, RXCAP = 65535 };
    static uint8_t rxb[NRX][RXCAP];
    mr_msg rx[NRX];
    size_t total = 0, i, r;
    double deadline = now_ms() + within_ms(3000);
    while (total < want && now_ms() < deadline) {
        mr_status st;
        memset(rx, 0, sizeof rx);
        for (i = 0; i < NRX; i++) {
            rx[i].buf = rxb[i];
            rx[i].cap = RXCAP;
        }
        r = 0;
        st = mr_udp_recvmsg(u, rx, NRX, 200, &r);
        if (st == MR_TIMEOUT) {
            continue;
        }
        if (!CHECK_ST(st, MR_OK)) {
            break;
        }
        for (i = 0; i < r; i++) {
            if (!CHECK(total + rx[i].len <= want, "too many bytes: %zu + %zu", total, rx[i].len)) {
                return total;
            }
            memcpy(got + total, rx[i].buf, rx[i].len);
            if (total == 0) {
                *local = rx[i].local;
                *ifindex = rx[i].ifindex;
                *from = rx[i].addr;
            }
            if (rx[i].segment_size != 0 && rx[i].len > rx[i].segment_size) {
                (*coalesced)++;
            }
            total += rx[i].len;
        }
    }
    return total;
}

/*
 * mr_msg on one backend: 20 separate 1200-byte packet buffers (each with
 * 8 bytes of headroom the sender must skip, as wireguard-go's offset) leave
 * as one GSO datagram gathered by iovecs; the receiver (bound to the
 * wildcard, with MR_UDP_PKTINFO) sees the bytes in order and the local
 * address they were sent to; its reply, sent from that address, arrives
 * from it. IPv4 on 127.0.0.2 and IPv6 on ::1 (dual-stack socket too).
 */
static void msg_test(uint32_t backend, const char *bind_b, const char *dst_text, const char *src_text)
{
    enum { SEG = 1200, NSEG = 20, HEADROOM = 8, TOTAL = SEG * NSEG };
    static uint8_t pkts[NSEG][HEADROOM + SEG], got[TOTAL], want[TOTAL];
    mr_udp *a = NULL, *b = NULL;
    mr_iovec iov[NSEG];
    mr_msg tx;
    mr_addr la, lb, dst, local, from;
    uint32_t ifindex = 0, lo = if_nametoindex("lo");
    size_t i, j, sent = 0, total;
    int coalesced = 0;
    const char *bind_a = dst_text[0] == '[' ? "[::1]:0" : "127.0.0.1:0";

    printf("-- mr_msg %s: %s -> %s\n", backend_name(backend), bind_a, dst_text);
    if (BIND_WITH(bind_a, backend, MR_UDP_GSO | MR_UDP_GRO | MR_UDP_PKTINFO, &a) <= 0) {
        return;
    }
    if (BIND_WITH(bind_b, backend, MR_UDP_GRO | MR_UDP_PKTINFO, &b) <= 0) {
        mr_udp_free(a);
        return;
    }
    CHECK_ST(mr_udp_local_addr(a, &la), MR_OK);
    CHECK_ST(mr_udp_local_addr(b, &lb), MR_OK);
    dst = ip_addr(dst_text);
    dst.port = lb.port;
    for (i = 0; i < NSEG; i++) {
        memset(pkts[i], 0xEE, HEADROOM); /* must never be sent */
        for (j = 0; j < SEG; j++) {
            pkts[i][HEADROOM + j] = (uint8_t)(i * 13 + j * 7);
            want[i * SEG + j] = pkts[i][HEADROOM + j];
        }
        iov[i].base = pkts[i] + HEADROOM;
        iov[i].len = SEG;
    }
    memset(&tx, 0, sizeof tx);
    tx.iov = iov;
    tx.iovcnt = NSEG;
    tx.addr = dst;
    tx.segment_size = SEG;
    CHECK_ST(mr_udp_sendmsg(a, &tx, 1, 1000, &sent), MR_OK);
    CHECK_EQ_U(sent, 1);
    total = recv_msgs(b, got, TOTAL, &local, &ifindex, &from, &coalesced);
    printf("     %zu bytes, %d coalesced, local family %u ifindex %u\n", total, coalesced, (unsigned)local.family,
           (unsigned)ifindex);
    CHECK_EQ_U(total, TOTAL);
    CHECK(memcmp(got, want, TOTAL) == 0, "gathered bytes differ (or the headroom was sent)");
    CHECK(coalesced >= 1, "the gathered GSO datagram did not arrive coalesced");
    CHECK(addr_equal(&from, &la), "source of the gathered datagram");
    {
        mr_addr ip_only = ip_addr(dst_text);
        ip_only.port = 0;
        ip_only.scope_id = 0;
        CHECK(addr_equal(&local, &ip_only), "local address of the datagram is not %s", dst_text);
    }
    CHECK(ifindex == lo, "arrival interface %u, want lo (%u)", (unsigned)ifindex, (unsigned)lo);

    /* Reply from the address the datagram was sent to (as wireguard-go's
       sticky sockets do), as a plain single-buffer mr_msg. */
    {
        mr_msg reply;
        static uint8_t echo[TOTAL];
        mr_addr rl, rfrom, want_from = ip_addr(src_text);
        uint32_t rif = 0;
        int rc = 0;
        memset(&reply, 0, sizeof reply);
        reply.buf = want;
        reply.len = 100;
        reply.addr = la;
        reply.local = local;
        reply.ifindex = ifindex;
        CHECK_ST(mr_udp_sendmsg(b, &reply, 1, 1000, &sent), MR_OK);
        size_t n = recv_msgs(a, echo, 100, &rl, &rif, &rfrom, &rc);
        CHECK_EQ_U(n, 100);
        want_from.port = lb.port;
        CHECK(addr_equal(&rfrom, &want_from), "reply did not come from the chosen source %s", src_text);
        CHECK(memcmp(echo, want, 100) == 0, "reply bytes");
    }
    mr_udp_free(a);
    mr_udp_free(b);
}

/* Bad mr_msg input: every case is MR_INVALID_ARGUMENT with nothing sent. */
static void msg_bad_input_test(void)
{
    mr_udp *u = NULL;
    mr_msg m;
    mr_iovec iov[2];
    uint8_t buf[16] = {0};
    size_t sent = 7;
    printf("-- mr_msg bad input\n");
    if (BIND_WITH("127.0.0.1:0", MR_BACKEND_BATCH, MR_UDP_PKTINFO, &u) <= 0) {
        return;
    }
#define BAD_SEND(what)                                                                          \
    do {                                                                                        \
        sent = 7;                                                                               \
        CHECK_FAIL(mr_udp_sendmsg(u, &m, 1, 0, &sent), MR_INVALID_ARGUMENT);                    \
        CHECK(sent == 0, "%s: sent %zu", what, sent);                                           \
    } while (0)
    memset(&m, 0, sizeof m);
    m.addr = ip_addr("127.0.0.1:9");
    m.iov = iov;
    m.iovcnt = 0;
    BAD_SEND("iov with iovcnt 0");
    m.iovcnt = MR_UDP_MAX_IOV + 1;
    BAD_SEND("iovcnt over MR_UDP_MAX_IOV");
    iov[0].base = NULL;
    iov[0].len = 4;
    m.iovcnt = 1;
    BAD_SEND("NULL iov base");
    iov[0].base = buf;
    iov[0].len = 40000;
    iov[1].base = buf;
    iov[1].len = 40000;
    m.iovcnt = 2;
    BAD_SEND("gathered 80000 bytes");
    m.iov = NULL;
    m.iovcnt = 2;
    BAD_SEND("NULL iov with iovcnt");
    m.iovcnt = 0;
    m.buf = buf;
    m.len = 4;
    m.local.family = 9;
    BAD_SEND("local family 9");
    m.local = ip_addr("[::1]:0");
    BAD_SEND("IPv6 source on an IPv4 socket");
    memset(&m.local, 0, sizeof m.local);
    m.reserved = 1;
    BAD_SEND("reserved != 0");
    {
        mr_msg r;
        size_t got = 7;
        memset(&r, 0, sizeof r);
        r.buf = buf;
        r.cap = sizeof buf;
        r.iov = iov;
        CHECK_FAIL(mr_udp_recvmsg(u, &r, 1, 0, &got), MR_INVALID_ARGUMENT);
        CHECK_EQ_U(got, 0);
    }
    CHECK_FAIL(mr_udp_sendmsg(NULL, &m, 1, 0, &sent), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_udp_set_mark(NULL, 1), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_udp_sockopt(u, SOL_SOCKET, SO_MARK, NULL), MR_INVALID_ARGUMENT);
    mr_udp_close(u);
    CHECK_FAIL(mr_udp_set_mark(u, 1), MR_CLOSED);
    mr_udp_free(u);
#undef BAD_SEND
}

/* SO_MARK and wireguard-go's 7 MiB buffers (forced past rmem_max as root). */
static void mark_and_buffers_test(void)
{
    mr_udp *u = NULL;
    mr_udp_config cfg;
    int v = -1;
    printf("-- SO_MARK and socket buffers\n");
    CHECK_ST(mr_udp_config_init(&cfg), MR_OK);
    cfg.so_rcvbuf = cfg.so_sndbuf = MR_UDP_WIREGUARD_BUFFER;
    if (!CHECK_ST(mr_udp_bind("127.0.0.1:0", &cfg, &u), MR_OK)) {
        return;
    }
    CHECK_ST(mr_udp_sockopt(u, SOL_SOCKET, SO_RCVBUF, &v), MR_OK);
    if (geteuid() == 0) {
        /* The kernel doubles the value for its bookkeeping. */
        CHECK(v >= 2 * MR_UDP_WIREGUARD_BUFFER, "SO_RCVBUF %d, want >= 2 * 7 MiB as root", v);
        CHECK_ST(mr_udp_sockopt(u, SOL_SOCKET, SO_SNDBUF, &v), MR_OK);
        CHECK(v >= 2 * MR_UDP_WIREGUARD_BUFFER, "SO_SNDBUF %d, want >= 2 * 7 MiB as root", v);
        CHECK_ST(mr_udp_set_mark(u, 0x5157), MR_OK);
        CHECK_ST(mr_udp_sockopt(u, SOL_SOCKET, SO_MARK, &v), MR_OK);
        CHECK(v == 0x5157, "SO_MARK %d after mr_udp_set_mark", v);
        CHECK_ST(mr_udp_set_mark(u, 0), MR_OK);
        CHECK_ST(mr_udp_sockopt(u, SOL_SOCKET, SO_MARK, &v), MR_OK);
        CHECK(v == 0, "SO_MARK %d after clearing", v);
    } else {
        mr_status st = mr_udp_set_mark(u, 1);
        printf("SKIP SO_MARK and forced buffers: not root (set_mark: %s, errno %d)\n", st_name(st),
               mr_last_os_error());
        CHECK(st == MR_IO && mr_last_os_error() == EPERM, "set_mark without CAP_NET_ADMIN");
    }
    mr_udp_free(u);
}

int main(int argc, char **argv)
{
    size_t b;
    test_init(argc, argv);
    for (b = 0; b < 3; b++) {
        uint32_t be = k_backends[b];
        echo_test(be, "127.0.0.1:0", 1);
        echo_test(be, "127.0.0.1:0", 64);
        echo_test(be, "[::1]:0", 1);
        echo_test(be, "[::1]:0", 64);
        dual_stack_test(be);
        gso_gro_test(be);
        timeout_test(be);
        from_fd_test(be, 4);
        from_fd_test(be, 6);
        from_fd_unbound_test(be);
        fd_readiness_test(be);
        msg_test(be, "0.0.0.0:0", "127.0.0.2:0", "127.0.0.2:0");
        msg_test(be, "[::]:0", "[::1]:0", "[::1]:0");
    }
    msg_bad_input_test();
    mark_and_buffers_test();
    /* AUTO picks one of the two and reports which. */
    {
        mr_udp *u = NULL;
        if (CHECK_ST(mr_udp_bind("127.0.0.1:0", NULL, &u), MR_OK)) {
            mr_backend be = mr_udp_backend(u);
            CHECK(be == MR_BACKEND_URING || be == MR_BACKEND_BATCH, "auto backend %d", (int)be);
            printf("     auto backend: %s\n", backend_name((uint32_t)be));
            mr_udp_free(u);
        }
    }
    return test_finish("test_udp");
}
