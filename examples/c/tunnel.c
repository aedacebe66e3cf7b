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
static mr_addr peer;
static unsigned long long to_peer, from_peer, dropped;

static void fail(const char *what, mr_status st) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    fprintf(stderr, "tunnel: %s: %s\n  %s\n", what, mr_status_str(st), msg);
    exit(1);
}

/* TUN -> UDP: each IP packet becomes one datagram to the peer. */
static void *tun_to_udp(void *arg) {
    static uint8_t bufs[BATCH][SLOT];
    mr_packet pkts[BATCH];
    mr_datagram out[BATCH];
    (void)arg;
    for (;;) {
        size_t got = 0, sent = 0;
        for (int i = 0; i < BATCH; i++) pkts[i] = (mr_packet){.buf = bufs[i], .cap = SLOT};
        mr_status st = mr_tun_read(tun, pkts, BATCH, -1, &got);
        if (st == MR_CLOSED) return NULL;
        if (st != MR_OK) fail("mr_tun_read", st);
        for (size_t i = 0; i < got; i++) out[i] = (mr_datagram){.buf = bufs[i], .cap = SLOT, .len = pkts[i].len, .addr = peer};
        /* A datagram the network refuses (MR_IO) is dropped; the rest still go. */
        for (size_t done = 0; done < got; done += sent + 1) {
            st = mr_udp_send(udp, out + done, got - done, -1, &sent);
            if (st == MR_CLOSED) return NULL;
            to_peer += sent;
            if (st == MR_OK) break;
            if (st != MR_IO) fail("mr_udp_send", st);
            dropped++;
        }
    }
}

/* UDP -> TUN: datagrams from the peer are written back as IP packets. */
static void *udp_to_tun(void *arg) {
    static uint8_t bufs[BATCH][SLOT];
    mr_datagram in[BATCH];
    mr_packet pkts[BATCH];
    (void)arg;
    for (;;) {
        size_t got = 0, written = 0, n = 0;
        for (int i = 0; i < BATCH; i++) in[i] = (mr_datagram){.buf = bufs[i], .cap = SLOT};
        mr_status st = mr_udp_recv(udp, in, BATCH, -1, &got);
        if (st == MR_CLOSED) return NULL;
        if (st != MR_OK) fail("mr_udp_recv", st);
        for (size_t i = 0; i < got; i++)
            if (in[i].len > 0) pkts[n++] = (mr_packet){.buf = bufs[i], .cap = SLOT, .len = in[i].len};
        if (n == 0) continue;
        /* A packet the kernel refuses (malformed, queue full) is dropped, like
           any router would; the rest of the batch is still written. */
        for (size_t done = 0; done < n; done += written + 1) {
            st = mr_tun_write(tun, pkts + done, n - done, -1, &written);
            if (st == MR_CLOSED) return NULL;
            from_peer += written;
            if (st == MR_OK) break;
            if (st != MR_INVALID_ARGUMENT && st != MR_IO) fail("mr_tun_write", st);
            dropped++;
        }
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
    if (argc > 5 && strcmp(argv[5], "offload") == 0) tcfg.flags |= MR_TUN_OFFLOAD;
    mr_status st = mr_tun_create(argv[1], &tcfg, &tun);
    if (st != MR_OK) fail("mr_tun_create", st);
    mr_udp_config ucfg;
    mr_udp_config_init(&ucfg);
    /* Bursts from a TCP flow outrun the default 208 KiB socket buffer. */
    ucfg.so_rcvbuf = ucfg.so_sndbuf = 4 << 20;
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
