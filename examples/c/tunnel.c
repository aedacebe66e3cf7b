/*
 * tunnel: a minimal point-to-point IP-over-UDP tunnel (no crypto) bridging
 * one TUN device and one UDP socket, both on meshring, in batches of 64.
 *
 *   tunnel TUN_NAME LOCAL_ADDR PEER_ADDR [MTU [offload]]
 *   e.g. tunnel mr0 198.18.1.1:7000 198.18.1.2:7000 1420 offload
 *
 * With "offload" the TUN device uses TSO/USO offloads: the kernel hands
 * over 64 KiB super-packets, which meshring splits into MTU-sized packets.
 *
 * Prints "ready <device>" once the device exists (assign it an address and
 * bring it up with ip(8)), then forwards until SIGINT/SIGTERM, which closes
 * both handles from a signal thread and unblocks the forwarders. Prints
 * packet counts on exit.
 */
#define _GNU_SOURCE
#include "meshring.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 64
#define SLOT 2048

static mr_tun *tun;
static mr_udp *udp;
static int offload;
static mr_addr peer;
static unsigned long long to_peer, from_peer, dropped;

static void fail(const char *what, mr_status st) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    fprintf(stderr, "tunnel: %s: %s\n  %s\n", what, mr_status_str(st), msg);
    exit(1);
}

/* Sends `n` datagrams, dropping any the network refuses; 0 once closed. */
static int send_all(mr_datagram *out, size_t n) {
    size_t sent = 0;
    for (size_t done = 0; done < n; done += sent + 1) {
        mr_status st = mr_udp_send(udp, out + done, n - done, -1, &sent);
        if (st == MR_CLOSED) return 0;
        if (st == MR_OK) break;
        if (st != MR_IO) fail("mr_udp_send", st);
        dropped++;
    }
    return 1;
}

/*
 * With offloads, runs of equal-sized packets (what one TCP super-packet
 * splits into) leave as one UDP GSO datagram gathered straight from their
 * packet buffers (mr_msg.iov, no copy): one send for up to 64 packets, and
 * the peer's GRO hands them over as one.
 */
static size_t group_for_gso(const mr_packet *pkts, size_t got, mr_iovec *iov, mr_msg *out) {
    size_t n = 0;
    for (size_t j = 0; j < got;) {
        size_t seg = pkts[j].len, total = 0, k = j;
        while (k < got && k - j < 64 && total + pkts[k].len <= 65000 && pkts[k].len <= seg) {
            iov[k] = (mr_iovec){.base = pkts[k].buf, .len = pkts[k].len};
            total += pkts[k].len;
            k++;
            if (pkts[k - 1].len < seg) break; /* a shorter packet ends the run */
        }
        out[n] = (mr_msg){.iov = iov + j, .iovcnt = k - j, .addr = peer, .segment_size = (uint16_t)(k - j > 1 ? seg : 0)};
        n++;
        to_peer += k - j;
        j = k;
    }
    return n;
}

/* Sends `n` gathered datagrams, dropping any the network refuses; 0 once closed. */
static int send_msgs(mr_msg *out, size_t n) {
    size_t sent = 0;
    for (size_t done = 0; done < n; done += sent + 1) {
        mr_status st = mr_udp_sendmsg(udp, out + done, n - done, -1, &sent);
        if (st == MR_CLOSED) return 0;
        if (st == MR_OK) break;
        if (st != MR_IO) fail("mr_udp_sendmsg", st);
        dropped++;
    }
    return 1;
}

/* TUN -> UDP: each IP packet becomes one datagram to the peer. */
static void *tun_to_udp(void *arg) {
    static uint8_t bufs[BATCH][SLOT];
    mr_packet pkts[BATCH];
    mr_datagram out[BATCH];
    mr_iovec iov[BATCH];
    mr_msg msgs[BATCH];
    (void)arg;
    for (;;) {
        size_t got = 0;
        for (int i = 0; i < BATCH; i++) pkts[i] = (mr_packet){.buf = bufs[i], .cap = SLOT};
        mr_status st = mr_tun_read(tun, pkts, BATCH, -1, &got);
        if (st == MR_CLOSED) return NULL;
        if (st != MR_OK) fail("mr_tun_read", st);
        if (offload) {
            if (!send_msgs(msgs, group_for_gso(pkts, got, iov, msgs))) return NULL;
            continue;
        }
        for (size_t i = 0; i < got; i++) out[i] = (mr_datagram){.buf = bufs[i], .cap = SLOT, .len = pkts[i].len, .addr = peer};
        to_peer += got;
        if (!send_all(out, got)) return NULL;
    }
}

#define GRO_DATAGRAMS 8
#define GRO_SLOT 65536

/* UDP -> TUN: datagrams from the peer are written back as IP packets. With
   offloads a GRO datagram holds several packets, cut at its segment size;
   the TUN write then coalesces each TCP/UDP flow back into super-packets. */
static void *udp_to_tun(void *arg) {
    static uint8_t bufs[GRO_DATAGRAMS][GRO_SLOT];
    mr_datagram in[BATCH]; /* BATCH >= GRO_DATAGRAMS */
    static mr_packet pkts[GRO_DATAGRAMS * 64];
    size_t slots = offload ? GRO_DATAGRAMS : BATCH, cap = offload ? GRO_SLOT : SLOT;
    uint8_t *base = &bufs[0][0];
    (void)arg;
    for (;;) {
        size_t got = 0, written = 0, n = 0;
        for (size_t i = 0; i < slots; i++) in[i] = (mr_datagram){.buf = base + i * cap, .cap = cap};
        mr_status st = mr_udp_recv(udp, in, slots, -1, &got);
        if (st == MR_CLOSED) return NULL;
        if (st != MR_OK) fail("mr_udp_recv", st);
        for (size_t i = 0; i < got; i++) {
            size_t seg = in[i].segment_size ? in[i].segment_size : in[i].len;
            for (size_t off = 0; off < in[i].len && seg > 0; off += seg) {
                size_t len = in[i].len - off < seg ? in[i].len - off : seg;
                pkts[n++] = (mr_packet){.buf = in[i].buf + off, .cap = len, .len = len};
            }
        }
        /* Packets of one flow anywhere in the batch are written coalesced
           (with offloads); a packet the kernel refuses (malformed, queue
           full) is dropped, like any router would, and the rest still go. */
        if (n == 0) continue;
        st = mr_tun_write_batch(tun, pkts, n, &written);
        if (st == MR_CLOSED) return NULL;
        from_peer += written;
        dropped += n - written;
        if (st != MR_OK && st != MR_INVALID_ARGUMENT && st != MR_IO) fail("mr_tun_write_batch", st);
    }
}

static void *on_signal(void *set) {
    int sig;
    sigwait((sigset_t *)set, &sig);
    mr_tun_close(tun);
    mr_udp_close(udp);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tunnel TUN_NAME LOCAL_ADDR PEER_ADDR [MTU [offload]]\n");
        return 2;
    }
    mr_log_init(NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    mr_tun_config tcfg;
    mr_tun_config_init(&tcfg);
    tcfg.mtu = argc > 4 ? (uint32_t)atoi(argv[4]) : 1420;
    offload = argc > 5 && strcmp(argv[5], "offload") == 0;
    if (offload) tcfg.flags |= MR_TUN_OFFLOAD;
    mr_status st = mr_tun_create(argv[1], &tcfg, &tun);
    if (st != MR_OK) fail("mr_tun_create", st);
    mr_udp_config ucfg;
    mr_udp_config_init(&ucfg);
    /* Bursts from a TCP flow outrun the default 208 KiB socket buffer. */
    ucfg.so_rcvbuf = ucfg.so_sndbuf = 4 << 20;
    if (offload) ucfg.flags |= MR_UDP_GSO | MR_UDP_GRO;
    if ((st = mr_udp_bind(argv[2], &ucfg, &udp)) != MR_OK) fail("mr_udp_bind", st);
    if ((st = mr_addr_parse(argv[3], &peer)) != MR_OK) fail("mr_addr_parse", st);

    char name[32];
    mr_tun_name(tun, name, sizeof name, NULL);
    printf("ready %s (tun %s%s, udp %s)\n", name, mr_tun_backend(tun) == MR_BACKEND_URING ? "io_uring" : "batch",
           (tcfg.flags & MR_TUN_OFFLOAD) ? " with offloads" : "",
           mr_udp_backend(udp) == MR_BACKEND_URING ? "io_uring" : "batch");
    fflush(stdout);

    pthread_t a, b, s;
    pthread_create(&s, NULL, on_signal, &set);
    pthread_create(&a, NULL, tun_to_udp, NULL);
    pthread_create(&b, NULL, udp_to_tun, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(s, NULL);
    mr_udp_counters c;
    mr_udp_stats(udp, &c);
    printf("tunnel %s: %llu packets to peer, %llu from peer, %llu dropped; udp rx calls %llu, tx calls %llu\n", name, to_peer,
           from_peer, dropped, (unsigned long long)c.rx_calls, (unsigned long long)c.tx_calls);
    mr_tun_free(tun);
    mr_udp_free(udp);
    return 0;
}
