/*
 * udp_echo: a UDP echo server and client on meshring.
 *
 *   udp_echo server ADDR            echo every datagram back, in batches
 *   udp_echo client ADDR COUNT      send COUNT numbered datagrams, check the echoes
 *   udp_echo demo                   both in one process on loopback, then a
 *                                   short one-way throughput run
 *
 * The server stops on SIGINT/SIGTERM (mr_udp_close from the signal thread
 * unblocks it). Only loopback is used by the demo.
 */
#define _GNU_SOURCE
#include "meshring.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64
#define SLOT 2048

static void fail(const char *what, mr_status st) {
    char msg[512];
    mr_last_error(msg, sizeof msg);
    fprintf(stderr, "udp_echo: %s: %s\n  %s\n", what, mr_status_str(st), msg);
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *backend_name(const mr_udp *u) {
    return mr_udp_backend(u) == MR_BACKEND_URING ? "io_uring" : "recvmmsg/sendmmsg (batch)";
}

/* Receives a batch and sends it straight back to each sender. Returns when closed. */
static void serve(mr_udp *u) {
    static uint8_t bufs[BATCH][SLOT];
    mr_datagram msgs[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) msgs[i] = (mr_datagram){.buf = bufs[i], .cap = SLOT};
        size_t got = 0, sent = 0;
        mr_status st = mr_udp_recv(u, msgs, BATCH, -1, &got);
        if (st == MR_CLOSED) return;
        if (st != MR_OK) fail("mr_udp_recv", st);
        /* The received len/addr already describe the reply. */
        st = mr_udp_send(u, msgs, got, 1000, &sent);
        if (st == MR_CLOSED) return;
        if (st != MR_OK) fprintf(stderr, "udp_echo: echoed %zu of %zu: %s\n", sent, got, mr_status_str(st));
    }
}

/* Sends `count` numbered datagrams to `server`, waits for each echo; returns how many came back intact. */
static long client(mr_udp *u, const mr_addr *server, long count) {
    static uint8_t out[BATCH][SLOT], in[BATCH][SLOT];
    static char seen[1 << 20];
    long ok = 0;
    if (count > (long)sizeof seen) count = sizeof seen;
    memset(seen, 0, (size_t)count);
    for (long next = 0; next < count;) {
        size_t n = count - next < BATCH ? (size_t)(count - next) : BATCH, sent = 0;
        mr_datagram msgs[BATCH];
        for (size_t i = 0; i < n; i++) {
            int len = snprintf((char *)out[i], SLOT, "meshring echo %ld", next + (long)i);
            msgs[i] = (mr_datagram){.buf = out[i], .cap = SLOT, .len = (size_t)len, .addr = *server};
        }
        mr_status st = mr_udp_send(u, msgs, n, 1000, &sent);
        if (st != MR_OK) fail("mr_udp_send", st);
        size_t want = n;
        while (want > 0) {
            mr_datagram back[BATCH];
            for (int i = 0; i < BATCH; i++) back[i] = (mr_datagram){.buf = in[i], .cap = SLOT};
            size_t got = 0;
            st = mr_udp_recv(u, back, want, 1000, &got);
            if (st == MR_TIMEOUT) break;
            if (st != MR_OK) fail("mr_udp_recv", st);
            for (size_t i = 0; i < got; i++) {
                long id;
                char text[64] = {0};
                memcpy(text, back[i].buf, back[i].len < 63 ? back[i].len : 63);
                if (sscanf(text, "meshring echo %ld", &id) == 1 && id >= 0 && id < count && !seen[id]) {
                    seen[id] = 1;
                    ok++;
                }
            }
            want -= got;
        }
        next += (long)n;
    }
    return ok;
}

static mr_udp *open_udp(const char *addr) {
    mr_udp *u;
    mr_status st = mr_udp_bind(addr, NULL, &u);
    if (st != MR_OK) fail("mr_udp_bind", st);
    return u;
}

static void *serve_thread(void *u) {
    serve((mr_udp *)u);
    return NULL;
}

static mr_udp *server_handle;
static void *signal_thread(void *set) {
    int sig;
    sigwait((sigset_t *)set, &sig);
    mr_udp_close(server_handle);
    return NULL;
}

static int demo(void) {
    printf("meshring %s (header %s)\n", mr_version(), MR_VERSION);
    mr_udp *server = open_udp("127.0.0.1:0"), *cl = open_udp("127.0.0.1:0");
    mr_addr server_addr;
    char text[64];
    mr_udp_local_addr(server, &server_addr);
    mr_addr_format(&server_addr, text, sizeof text, NULL);
    printf("backend: %s\n", backend_name(server));
    pthread_t t;
    pthread_create(&t, NULL, serve_thread, server);

    long count = 1000, ok = client(cl, &server_addr, count);
    printf("echo: %ld of %ld datagrams came back intact from %s %s\n", ok, count, text, ok == count ? "(verified)" : "(MISSING SOME)");

    /* One-way throughput: a second receiver, batches of 64 x 1400 bytes. */
    mr_udp *sink = open_udp("127.0.0.1:0");
    mr_addr sink_addr;
    mr_udp_local_addr(sink, &sink_addr);
    static uint8_t payload[BATCH][1400], rx[BATCH][SLOT];
    mr_datagram out[BATCH], in[BATCH];
    for (int i = 0; i < BATCH; i++) out[i] = (mr_datagram){.buf = payload[i], .cap = 1400, .len = 1400, .addr = sink_addr};
    long total = 200000, got_total = 0;
    double t0 = now_s();
    for (long sent_total = 0; sent_total < total;) {
        size_t sent = 0, got = 0;
        mr_udp_send(cl, out, BATCH, 1000, &sent);
        sent_total += (long)sent;
        for (int i = 0; i < BATCH; i++) in[i] = (mr_datagram){.buf = rx[i], .cap = SLOT};
        while (mr_udp_recv(sink, in, BATCH, 0, &got) == MR_OK) got_total += (long)got;
    }
    size_t got = 0;
    while (mr_udp_recv(sink, in, BATCH, 100, &got) == MR_OK) got_total += (long)got;
    double secs = now_s() - t0;
    printf("throughput: %ld x 1400 B sent, %ld received in %.2f s: %.0f datagrams/s, %.2f Gbit/s (one process, loopback)\n",
           total, got_total, secs, got_total / secs, got_total * 1400.0 * 8 / secs / 1e9);

    mr_udp_close(server);
    pthread_join(t, NULL);
    mr_udp_free(server);
    mr_udp_free(cl);
    mr_udp_free(sink);
    return ok == count ? 0 : 1;
}

int main(int argc, char **argv) {
    mr_log_init(NULL);
    if (argc >= 2 && !strcmp(argv[1], "demo")) return demo();
    if (argc >= 3 && !strcmp(argv[1], "server")) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        server_handle = open_udp(argv[2]);
        pthread_t t;
        pthread_create(&t, NULL, signal_thread, &set);
        mr_addr a;
        char text[64];
        mr_udp_local_addr(server_handle, &a);
        mr_addr_format(&a, text, sizeof text, NULL);
        printf("echoing on %s (%s); Ctrl-C stops\n", text, backend_name(server_handle));
        fflush(stdout);
        serve(server_handle);
        mr_udp_free(server_handle);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "client")) {
        mr_addr server;
        mr_status st = mr_addr_parse(argv[2], &server);
        if (st != MR_OK) fail("mr_addr_parse", st);
        mr_udp *u = open_udp(server.family == 6 ? "[::]:0" : "0.0.0.0:0");
        long count = atol(argv[3]), ok = client(u, &server, count);
        printf("%ld of %ld echoes verified\n", ok, count);
        mr_udp_free(u);
        return ok == count ? 0 : 1;
    }
    fprintf(stderr, "usage: udp_echo demo | server ADDR | client ADDR COUNT\n");
    return 2;
}
