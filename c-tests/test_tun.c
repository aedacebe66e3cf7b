/*
 * TUN handle tests. Root only: the process first moves into a fresh network
 * namespace (unshare), so every device it makes exists only there and
 * disappears with it. Covers create/close cycles, bad names, bad fds, wrong
 * MTU, short buffers, read timeouts, close while blocked, and a round trip:
 * an ICMP echo request written into the device comes back as a reply; and
 * mr_tun_write_batch with offloads: UDP datagrams of two interleaved flows
 * are coalesced by flow and reach a kernel socket whole and in order, a
 * bad packet in the batch does not stop the rest.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>

#include "test_util.h"

static const uint32_t k_backends[2] = {MR_BACKEND_URING, MR_BACKEND_BATCH};

static mr_tun *create(const char *name, uint32_t backend, uint32_t flags, uint32_t mtu)
{
    mr_tun_config cfg;
    mr_tun *t = NULL;
    CHECK_ST(mr_tun_config_init(&cfg), MR_OK);
    cfg.backend = backend;
    cfg.flags = flags;
    cfg.mtu = mtu;
    if (!CHECK_ST(mr_tun_create(name, &cfg, &t), MR_OK)) {
        return NULL;
    }
    CHECK(mr_tun_backend(t) == (mr_backend)backend, "backend %d", (int)mr_tun_backend(t));
    return t;
}

static uint16_t csum(const uint8_t *p, size_t n)
{
    uint32_t sum = 0;
    size_t i;
    for (i = 0; i + 1 < n; i += 2) {
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    }
    if (n & 1) {
        sum += (uint32_t)p[n - 1] << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return (uint16_t)~sum;
}

/* An ICMP echo request 198.18.6.2 -> 198.18.6.1 with id `id`. */
static size_t echo_request(uint8_t *p, uint16_t id)
{
    static const char payload[] = "meshring c tun";
    size_t total = 20 + 8 + sizeof payload;
    uint16_t c;
    memset(p, 0, total);
    p[0] = 0x45;
    p[2] = (uint8_t)(total >> 8);
    p[3] = (uint8_t)total;
    p[8] = 64;
    p[9] = 1;
    p[12] = 198, p[13] = 18, p[14] = 6, p[15] = 2;
    p[16] = 198, p[17] = 18, p[18] = 6, p[19] = 1;
    c = csum(p, 20);
    p[10] = (uint8_t)(c >> 8), p[11] = (uint8_t)c;
    p[20] = 8;
    p[24] = (uint8_t)(id >> 8), p[25] = (uint8_t)id;
    memcpy(p + 28, payload, sizeof payload);
    c = csum(p + 20, total - 20);
    p[22] = (uint8_t)(c >> 8), p[23] = (uint8_t)c;
    return total;
}

static void round_trip(uint32_t backend, uint32_t flags)
{
    static uint8_t out[4][128], in[8][2048];
    mr_packet w[4], r[8];
    char name[32], cmd[160];
    size_t written = 0, got, i, replies = 0;
    uint32_t mtu = 0;
    double deadline;
    mr_tun *t;

    printf("-- round trip %s flags %u\n", backend_name(backend), (unsigned)flags);
    t = create("mrc%d", backend, flags, 1400);
    if (t == NULL) {
        return;
    }
    CHECK_ST(mr_tun_name(t, name, sizeof name, NULL), MR_OK);
    CHECK(strncmp(name, "mrc", 3) == 0, "name %s", name);
    CHECK_ST(mr_tun_mtu(t, &mtu), MR_OK);
    CHECK_EQ_U(mtu, 1400);
    snprintf(cmd, sizeof cmd, "ip addr add 198.18.6.1/24 dev %s && ip link set %s up", name, name);
    CHECK(system(cmd) == 0, "%s", cmd);
    /* Drain what the kernel sends when the link comes up. */
    for (i = 0; i < 8; i++) {
        r[i] = (mr_packet){.buf = in[i], .cap = sizeof in[i]};
    }
    while (mr_tun_read(t, r, 8, 50, &got) == MR_OK) {
    }
    for (i = 0; i < 4; i++) {
        w[i] = (mr_packet){.buf = out[i], .cap = sizeof out[i], .len = echo_request(out[i], (uint16_t)(7 + i))};
    }
    CHECK_ST(mr_tun_write(t, w, 4, -1, &written), MR_OK);
    CHECK_EQ_U(written, 4);
    deadline = now_ms() + within_ms(3000);
    while (replies < 4 && now_ms() < deadline) {
        for (i = 0; i < 8; i++) {
            r[i] = (mr_packet){.buf = in[i], .cap = sizeof in[i]};
        }
        if (mr_tun_read(t, r, 8, 500, &got) != MR_OK) {
            continue;
        }
        for (i = 0; i < got; i++) {
            if (r[i].proto == 0x0800 && r[i].len >= 28 && in[i][9] == 1 && in[i][20] == 0 && in[i][19] == 2) {
                replies++;
            }
        }
    }
    CHECK_EQ_U(replies, 4);
    CHECK_ST(mr_tun_close(t), MR_OK);
    mr_tun_free(t);
}

/* A UDP/IPv4 datagram 198.18.6.2:sport -> 198.18.6.1:dport with a valid
   checksum; payload byte j is (seed + j). */
static size_t udp_packet(uint8_t *p, uint16_t sport, uint16_t dport, size_t payload, uint8_t seed)
{
    size_t total = 20 + 8 + payload, j;
    uint32_t sum = 0;
    uint16_t c;
    memset(p, 0, 28);
    p[0] = 0x45;
    p[2] = (uint8_t)(total >> 8), p[3] = (uint8_t)total;
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12] = 198, p[13] = 18, p[14] = 6, p[15] = 2;
    p[16] = 198, p[17] = 18, p[18] = 6, p[19] = 1;
    c = csum(p, 20);
    p[10] = (uint8_t)(c >> 8), p[11] = (uint8_t)c;
    p[20] = (uint8_t)(sport >> 8), p[21] = (uint8_t)sport;
    p[22] = (uint8_t)(dport >> 8), p[23] = (uint8_t)dport;
    p[24] = (uint8_t)((total - 20) >> 8), p[25] = (uint8_t)(total - 20);
    for (j = 0; j < payload; j++) {
        p[28 + j] = (uint8_t)(seed + j);
    }
    /* Pseudo header + UDP header + payload. */
    for (j = 12; j < 20; j += 2) {
        sum += (uint32_t)(p[j] << 8 | p[j + 1]);
    }
    sum += 17 + (uint32_t)(total - 20);
    for (j = 20; j + 1 < total; j += 2) {
        sum += (uint32_t)(p[j] << 8 | p[j + 1]);
    }
    if ((total - 20) & 1) {
        sum += (uint32_t)p[total - 1] << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    c = (uint16_t)~sum;
    if (c == 0) {
        c = 0xffff;
    }
    p[26] = (uint8_t)(c >> 8), p[27] = (uint8_t)c;
    return total;
}

/*
 * mr_tun_write_batch on an offloading device: 2 x 20 datagrams of two
 * flows, interleaved, plus one non-IP packet, go to two kernel UDP sockets
 * of this namespace. Each socket must receive its 20 datagrams whole and in
 * order (the kernel verifies every checksum after cutting the coalesced
 * super-packets back up), the bad packet is refused alone.
 */
static void write_batch_test(uint32_t backend)
{
    enum { PER_FLOW = 20, N = 2 * PER_FLOW + 1, PAYLOAD = 1000 };
    static uint8_t bufs[N][2048], rx[2048];
    mr_packet w[N];
    char name[32], cmd[160];
    int socks[2];
    uint16_t ports[2];
    size_t i, written = 99, got[2] = {0, 0};
    uint32_t bits = 0;
    int order_ok = 1;
    double deadline;
    mr_tun *t;

    printf("-- write batch %s\n", backend_name(backend));
    t = create("mrw%d", backend, MR_TUN_OFFLOAD, 1500);
    if (t == NULL) {
        return;
    }
    CHECK_ST(mr_tun_name(t, name, sizeof name, NULL), MR_OK);
    snprintf(cmd, sizeof cmd, "ip addr add 198.18.6.1/24 dev %s && ip link set %s up", name, name);
    CHECK(system(cmd) == 0, "%s", cmd);
    CHECK_ST(mr_tun_gro(t, &bits), MR_OK);
    printf("     write GRO bits %u\n", (unsigned)bits);
    CHECK(bits & MR_TUN_GRO_TCP, "TCP coalescing on with MR_TUN_OFFLOAD");
    for (i = 0; i < 2; i++) {
        struct sockaddr_in a;
        socklen_t alen = sizeof a;
        socks[i] = socket(AF_INET, SOCK_DGRAM, 0);
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(0xC6120601); /* 198.18.6.1 */
        CHECK(bind(socks[i], (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
        getsockname(socks[i], (struct sockaddr *)&a, &alen);
        ports[i] = ntohs(a.sin_port);
    }
    for (i = 0; i < N; i++) {
        size_t k = i / 2, flow = i % 2;
        if (i == PER_FLOW) { /* a non-IP packet in the middle */
            memset(bufs[i], 0, 40);
            w[i] = (mr_packet){.buf = bufs[i], .cap = sizeof bufs[i], .len = 40};
            continue;
        }
        if (i > PER_FLOW) {
            k = (i - 1) / 2, flow = (i - 1) % 2;
        }
        w[i] = (mr_packet){.buf = bufs[i], .cap = sizeof bufs[i],
                           .len = udp_packet(bufs[i], (uint16_t)(5000 + flow), ports[flow], PAYLOAD, (uint8_t)(k * 7))};
    }
    CHECK_FAIL(mr_tun_write_batch(t, w, N, &written), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(written, N - 1);
    deadline = now_ms() + within_ms(3000);
    while ((got[0] < PER_FLOW || got[1] < PER_FLOW) && now_ms() < deadline) {
        for (i = 0; i < 2; i++) {
            ssize_t n = recv(socks[i], rx, sizeof rx, MSG_DONTWAIT);
            if (n < 0) {
                continue;
            }
            if (n != PAYLOAD || rx[0] != (uint8_t)(got[i] * 7) || rx[PAYLOAD - 1] != (uint8_t)(got[i] * 7 + PAYLOAD - 1)) {
                order_ok = 0;
            }
            got[i]++;
        }
    }
    CHECK(got[0] == PER_FLOW && got[1] == PER_FLOW, "received %zu and %zu of %d datagrams", got[0], got[1], PER_FLOW);
    CHECK(order_ok, "a datagram arrived out of order or altered");
    CHECK_ST(mr_tun_disable_gro(t, MR_TUN_GRO_UDP), MR_OK);
    CHECK_ST(mr_tun_gro(t, &bits), MR_OK);
    CHECK(!(bits & MR_TUN_GRO_UDP), "UDP coalescing still on after disabling it");
    CHECK_FAIL(mr_tun_disable_gro(t, 8), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_tun_write_batch(t, w, 0, &written), MR_INVALID_ARGUMENT);
    close(socks[0]);
    close(socks[1]);
    mr_tun_free(t);
}

struct blocked {
    mr_tun *t;
    mr_status st;
};

static void *blocked_reader(void *arg)
{
    struct blocked *b = arg;
    static uint8_t buf[2048];
    mr_packet p = {.buf = buf, .cap = sizeof buf};
    size_t got = 0;
    b->st = mr_tun_read(b->t, &p, 1, -1, &got);
    return NULL;
}

static void timeouts_and_close(uint32_t backend)
{
    static uint8_t buf[2048], small[100];
    mr_packet p = {.buf = buf, .cap = sizeof buf};
    mr_packet ps = {.buf = small, .cap = sizeof small};
    struct blocked b;
    pthread_t th;
    size_t got = 99;
    uint32_t mtu;
    double t0;
    char name[32];

    printf("-- timeouts, close %s\n", backend_name(backend));
    b.t = create("", backend, 0, 0);
    if (b.t == NULL) {
        return;
    }
    CHECK_FAIL(mr_tun_read(b.t, &p, 1, 0, &got), MR_WOULD_BLOCK);
    CHECK_EQ_U(got, 0);
    t0 = now_ms();
    CHECK_FAIL(mr_tun_read(b.t, &p, 1, 50, &got), MR_TIMEOUT);
    CHECK(now_ms() - t0 >= 45, "returned after %.1f ms", now_ms() - t0);
    CHECK_FAIL(mr_tun_read(b.t, &ps, 1, 0, &got), MR_BUFFER_TOO_SMALL);
    CHECK_FAIL(mr_tun_set_mtu(b.t, 10), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_tun_set_mtu(b.t, 70000), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_tun_set_mtu(b.t, 1280), MR_OK);
    CHECK_ST(mr_tun_mtu(b.t, &mtu), MR_OK);
    CHECK_EQ_U(mtu, 1280);
    CHECK_FAIL(mr_tun_name(b.t, name, 2, NULL), MR_BUFFER_TOO_SMALL);
    CHECK(mr_tun_fd(b.t) >= 0, "fd");
    {
        uint8_t junk[8] = {0};
        mr_packet j = {.buf = junk, .cap = sizeof junk, .len = sizeof junk};
        size_t written = 9;
        CHECK_FAIL(mr_tun_write(b.t, &j, 1, -1, &written), MR_INVALID_ARGUMENT);
        CHECK_EQ_U(written, 0);
    }
    if (!uring_blocking_skipped(backend, "close while a reader blocks in mr_tun_read(-1)")) {
        b.st = MR_OK;
        pthread_create(&th, NULL, blocked_reader, &b);
        usleep(50000);
        t0 = now_ms();
        CHECK_ST(mr_tun_close(b.t), MR_OK);
        CHECK(join_within(th, (int)within_ms(100)) == 0, "reader still blocked after close");
        CHECK_EQ_U(b.st, MR_CLOSED);
        CHECK(now_ms() - t0 < within_ms(100), "close took %.1f ms", now_ms() - t0);
    }
    CHECK_ST(mr_tun_close(b.t), MR_OK);
    CHECK_FAIL(mr_tun_read(b.t, &p, 1, 0, &got), MR_CLOSED);
    CHECK_FAIL(mr_tun_mtu(b.t, &mtu), MR_CLOSED);
    CHECK(mr_tun_fd(b.t) == -1, "fd after close");
    mr_tun_free(b.t);
}

static void bad_input(void)
{
    mr_tun *t = (mr_tun *)1;
    mr_tun_config cfg;
    uint8_t buf[2048];
    mr_packet p = {.buf = buf, .cap = sizeof buf};
    size_t got;
    int fds[2];

    printf("-- bad input\n");
    CHECK_FAIL(mr_tun_create("mr-name-longer-than-15", NULL, &t), MR_INVALID_ARGUMENT);
    CHECK(t == NULL, "out reset on failure");
    CHECK_FAIL(mr_tun_create(NULL, NULL, &t), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_tun_create("\xff\xfe", NULL, &t), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_tun_create("mr0", NULL, NULL), MR_INVALID_ARGUMENT);
    mr_tun_config_init(&cfg);
    cfg.flags = 64;
    CHECK_FAIL(mr_tun_create("mr0", &cfg, &t), MR_INVALID_ARGUMENT);
    cfg.flags = 0;
    cfg.struct_size = 0;
    CHECK_FAIL(mr_tun_create("mr0", &cfg, &t), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_tun_from_fd(-1, NULL, &t), MR_INVALID_ARGUMENT);
    CHECK(pipe(fds) == 0, "pipe");
    CHECK_FAIL(mr_tun_from_fd(fds[0], NULL, &t), MR_INVALID_ARGUMENT);
    CHECK(fcntl(fds[0], F_GETFD) >= 0, "pipe fd still open after a failed from_fd");
    close(fds[0]);
    close(fds[1]);
    CHECK_FAIL(mr_tun_read(NULL, &p, 1, 0, &got), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_tun_write(NULL, &p, 1, 0, &got), MR_INVALID_ARGUMENT);
    CHECK_FAIL(mr_tun_close(NULL), MR_INVALID_ARGUMENT);
    CHECK(mr_tun_fd(NULL) == -1, "fd of NULL");
    CHECK(mr_tun_backend(NULL) == MR_BACKEND_AUTO, "backend of NULL");
    mr_tun_free(NULL);
    t = create("", MR_BACKEND_BATCH, 0, 0);
    if (t != NULL) {
        CHECK_FAIL(mr_tun_read(t, &p, 0, 0, &got), MR_INVALID_ARGUMENT);
        CHECK_FAIL(mr_tun_read(t, NULL, 1, 0, &got), MR_INVALID_ARGUMENT);
        CHECK_FAIL(mr_tun_read(t, &p, 1, 0, NULL), MR_INVALID_ARGUMENT);
        p.buf = NULL;
        CHECK_FAIL(mr_tun_read(t, &p, 1, 0, &got), MR_INVALID_ARGUMENT);
        mr_tun_free(t);
    }
}

static void cycles(uint32_t backend, int n)
{
    int before, after, i;
    long rss0, rss1;
    printf("-- %d create/free cycles %s\n", n, backend_name(backend));
    before = count_fds();
    rss0 = rss_kib();
    for (i = 0; i < n; i++) {
        mr_tun *t = NULL;
        mr_tun_config cfg;
        mr_tun_config_init(&cfg);
        cfg.backend = backend;
        if (mr_tun_create("", &cfg, &t) != MR_OK) {
            CHECK(0, "cycle %d: create failed", i);
            break;
        }
        mr_tun_close(t);
        mr_tun_free(t);
    }
    after = count_fds();
    rss1 = rss_kib();
    CHECK(after == before, "fds %d -> %d", before, after);
    CHECK(rss1 - rss0 < (g_valgrind ? 40 : 8) * 1024, "VmRSS %ld -> %ld KiB", rss0, rss1);
}

int main(int argc, char **argv)
{
    size_t b;
    test_init(argc, argv);
    if (access("/dev/net/tun", F_OK) != 0) {
        printf("SKIP test_tun: the kernel has no /dev/net/tun\n");
        return test_finish("test_tun");
    }
    if (unshare(CLONE_NEWNET) != 0) {
        printf("SKIP test_tun: cannot create a network namespace (needs root): %s\n", strerror(errno));
        return test_finish("test_tun");
    }
    bad_input();
    for (b = 0; b < 2; b++) {
        round_trip(k_backends[b], 0);
        round_trip(k_backends[b], MR_TUN_PACKET_INFO);
        timeouts_and_close(k_backends[b]);
        write_batch_test(k_backends[b]);
        cycles(k_backends[b], g_valgrind ? 50 : 200);
    }
    return test_finish("test_tun");
}
