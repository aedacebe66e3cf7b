/*
 * UDP loopback benchmark: one sender thread, one receiver thread, fixed
 * packet count. The implementation under test does both sides:
 *   meshring-uring / meshring-batch  the library (mr_udp_send / mr_udp_recv)
 *   meshring-multishot               the library, io_uring multishot RECVMSG receive
 *   recvmmsg                         plain sendmmsg/recvmmsg, the baseline
 *   meshring-gso                     the library with GSO send + GRO receive
 *   recvmmsg-gso                     plain GSO sendmsg + GRO recvmmsg
 * Modes:
 *   stream  sender and receiver run together (sender-bound on loopback)
 *   drain   the receive queue is filled first, then the receiver is timed
 *           alone: its ceiling and its CPU per datagram
 * Prints one line: RESULT impl=... mode=... payload=... sent=... received=...
 *   seconds=... rx_cpu_us=... tx_cpu_us=...
 * Loopback only; every loop is bounded by the count and by a silence timeout.
 */
#define _GNU_SOURCE
#include "meshring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define BATCH 64
#define GSO_SEGS 46
#define MAX_DGRAM 65535

enum impl { IMPL_URING, IMPL_BATCH, IMPL_MMSG, IMPL_MR_GSO, IMPL_MMSG_GSO, IMPL_MR_MULTI };

static enum impl impl;
static int drain_mode;
static size_t payload = 64;
static long count = 1000000;
static int rx_fd, tx_fd;
static struct sockaddr_in rx_addr;
static mr_udp *rx_udp, *tx_udp;
static long received;
static double rx_seconds, rx_cpu_us, tx_cpu_us;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double thread_cpu_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
}

static void die(const char *what) {
    char msg[256];
    mr_last_error(msg, sizeof msg);
    fprintf(stderr, "udp_bench: %s: %s (errno %d)\n", what, msg, errno);
    exit(2);
}

static int uses_gso(void) { return impl == IMPL_MR_GSO || impl == IMPL_MMSG_GSO; }
static int uses_library(void) { return impl != IMPL_MMSG && impl != IMPL_MMSG_GSO; }

/* Datagrams (not GSO sends) each send call carries. */


static int udp_socket(int rcvbuf) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0)
        die("SO_RCVBUF");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    return fd;
}

static mr_udp *wrap(int fd, int gro) {
    mr_udp_config cfg;
    mr_udp_config_init(&cfg);
    cfg.backend = impl == IMPL_BATCH ? MR_BACKEND_BATCH : MR_BACKEND_URING;
    if (impl == IMPL_MR_GSO) cfg.flags = gro ? MR_UDP_GRO : MR_UDP_GSO;
    if (impl == IMPL_MR_MULTI) cfg.flags = MR_UDP_MULTISHOT_RECV;
    mr_udp *u;
    if (mr_udp_from_fd(fd, &cfg, &u) != MR_OK) die("mr_udp_from_fd");
    return u;
}

/* ---- send side ---- */

static void send_plain(long n) {
    static char buf[BATCH][MAX_DGRAM];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        memset(buf[i], 'x', payload);
        iov[i].iov_base = buf[i];
        iov[i].iov_len = payload;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        /* An address per datagram, like a VPN socket talking to many peers. */
        msgs[i].msg_hdr.msg_name = &rx_addr;
        msgs[i].msg_hdr.msg_namelen = sizeof rx_addr;
    }
    for (long sent = 0; sent < n;) {
        int want = n - sent < BATCH ? (int)(n - sent) : BATCH;
        int r = sendmmsg(tx_fd, msgs, want, 0);
        if (r < 0) {
            if (errno == EINTR || errno == ENOBUFS) continue;
            die("sendmmsg");
        }
        sent += r;
    }
}

static void send_gso_plain(long n) {
    static char buf[GSO_SEGS * 1500];
    memset(buf, 'g', sizeof buf);
    for (long sent = 0; sent < n;) {
        long segs = n - sent < GSO_SEGS ? n - sent : GSO_SEGS;
        char control[CMSG_SPACE(sizeof(uint16_t))] = {0};
        struct iovec iov = {buf, segs * payload};
        struct msghdr m = {.msg_name = &rx_addr, .msg_namelen = sizeof rx_addr, .msg_iov = &iov, .msg_iovlen = 1,
                           .msg_control = control, .msg_controllen = sizeof control};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = (uint16_t)payload;
        memcpy(CMSG_DATA(c), &seg, sizeof seg);
        if (sendmsg(tx_fd, &m, 0) < 0) {
            if (errno == EINTR || errno == ENOBUFS) continue;
            die("sendmsg(GSO)");
        }
        sent += segs;
    }
}

static void send_library(long n) {
    static uint8_t buf[BATCH][MAX_DGRAM];
    mr_datagram msgs[BATCH];
    mr_addr dst;
    char text[64];
    snprintf(text, sizeof text, "127.0.0.1:%d", ntohs(rx_addr.sin_port));
    if (mr_addr_parse(text, &dst) != MR_OK) die("mr_addr_parse");
    for (int i = 0; i < BATCH; i++) {
        memset(buf[i], 'm', sizeof buf[i]);
        msgs[i] = (mr_datagram){.buf = buf[i], .cap = sizeof buf[i], .len = payload, .addr = dst};
        if (impl == IMPL_MR_GSO) {
            msgs[i].len = payload * GSO_SEGS;
            msgs[i].segment_size = (uint16_t)payload;
        }
    }
    for (long sent = 0; sent < n;) {
        size_t want, done = 0;
        if (impl == IMPL_MR_GSO) {
            long segs = n - sent < GSO_SEGS ? n - sent : GSO_SEGS;
            msgs[0].len = segs * payload;
            want = 1;
            mr_status st = mr_udp_send(tx_udp, msgs, want, -1, &done);
            if (st != MR_OK && st != MR_IO) die("mr_udp_send");
            if (done == 1) sent += segs;
            continue;
        }
        want = n - sent < BATCH ? (size_t)(n - sent) : BATCH;
        mr_status st = mr_udp_send(tx_udp, msgs, want, -1, &done);
        if (st != MR_OK && st != MR_IO) die("mr_udp_send");
        sent += done;
    }
}

static void send_all(long n) {
    if (uses_library()) send_library(n);
    else if (impl == IMPL_MMSG_GSO) send_gso_plain(n);
    else send_plain(n);
}

static void *sender_main(void *arg) {
    (void)arg;
    double c0 = thread_cpu_us();
    send_all(count);
    tx_cpu_us = thread_cpu_us() - c0;
    return NULL;
}

/* ---- receive side ---- */

static long segments_in(size_t len, uint16_t seg) {
    if (seg == 0 || len <= seg) return 1;
    return (long)((len + seg - 1) / seg);
}

static void *receiver_main(void *arg) {
    (void)arg;
    size_t cap = uses_gso() ? MAX_DGRAM : 2048;
    uint8_t *arena = malloc(BATCH * cap);
    double c0 = thread_cpu_us(), t0 = 0, t_last = 0;
    if (uses_library()) {
        mr_datagram msgs[BATCH];
        for (int i = 0; i < BATCH; i++) msgs[i] = (mr_datagram){.buf = arena + i * cap, .cap = cap};
        while (received < count) {
            size_t got = 0;
            mr_status st = mr_udp_recv(rx_udp, msgs, BATCH, 300, &got);
            if (st == MR_TIMEOUT) break;
            if (st != MR_OK) die("mr_udp_recv");
            if (t0 == 0) t0 = now_s();
            for (size_t i = 0; i < got; i++) received += segments_in(msgs[i].len, msgs[i].segment_size);
            t_last = now_s();
        }
    } else {
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        /* Source addresses are asked for, as any VPN receiver needs them. */
        struct sockaddr_in6 from[BATCH];
        char control[BATCH][CMSG_SPACE(sizeof(int))];
        struct timeval tv = {0, 300000};
        setsockopt(rx_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (received < count) {
            for (int i = 0; i < BATCH; i++) {
                iov[i] = (struct iovec){arena + i * cap, cap};
                msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1};
                if (uses_gso()) {
                    msgs[i].msg_hdr.msg_control = control[i];
                    msgs[i].msg_hdr.msg_controllen = sizeof control[i];
                }
            }
            int r = recvmmsg(rx_fd, msgs, BATCH, MSG_WAITFORONE, NULL);
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                die("recvmmsg");
            }
            if (t0 == 0) t0 = now_s();
            for (int i = 0; i < r; i++) {
                uint16_t seg = 0;
                if (uses_gso()) {
                    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
                        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                            int v;
                            memcpy(&v, CMSG_DATA(c), sizeof v);
                            seg = (uint16_t)v;
                        }
                }
                received += segments_in(msgs[i].msg_len, seg);
            }
            t_last = now_s();
        }
    }
    rx_cpu_us = thread_cpu_us() - c0;
    rx_seconds = t_last - t0;
    free(arena);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: udp_bench IMPL MODE PAYLOAD COUNT\n"
                        "  IMPL: meshring-uring meshring-batch meshring-multishot recvmmsg meshring-gso recvmmsg-gso\n"
                        "  MODE: stream drain\n");
        return 2;
    }
    const char *names[] = {"meshring-uring", "meshring-batch", "recvmmsg", "meshring-gso", "recvmmsg-gso", "meshring-multishot"};
    int found = 0;
    for (int i = 0; i < 6; i++)
        if (!strcmp(argv[1], names[i])) impl = (enum impl)i, found = 1;
    if (!found) { fprintf(stderr, "unknown impl %s\n", argv[1]); return 2; }
    drain_mode = !strcmp(argv[2], "drain");
    payload = (size_t)atol(argv[3]);
    count = atol(argv[4]);
    if (payload == 0 || payload > 1472 || count <= 0) { fprintf(stderr, "bad payload/count\n"); return 2; }

    /* Drain mode must hold the whole run in the socket queue. */
    long truesize = (long)payload + 1024;
    int rcvbuf = drain_mode ? (int)(count * truesize > (1L << 30) ? (1L << 30) : count * truesize) : 8 << 20;
    if (uses_gso() && drain_mode) rcvbuf = 1 << 30;
    rx_fd = udp_socket(rcvbuf);
    socklen_t alen = sizeof rx_addr;
    getsockname(rx_fd, (struct sockaddr *)&rx_addr, &alen);
    tx_fd = udp_socket(0);
    if (uses_gso() && impl == IMPL_MMSG_GSO) {
        int one = 1;
        if (setsockopt(rx_fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) die("UDP_GRO");
    }
    if (uses_library()) {
        rx_udp = wrap(rx_fd, 1);
        tx_udp = wrap(tx_fd, 0);
    }

    pthread_t tx, rx;
    if (drain_mode) {
        double c0 = thread_cpu_us();
        send_all(count);
        tx_cpu_us = thread_cpu_us() - c0;
        usleep(100000);
        pthread_create(&rx, NULL, receiver_main, NULL);
        pthread_join(rx, NULL);
    } else {
        pthread_create(&rx, NULL, receiver_main, NULL);
        usleep(20000);
        pthread_create(&tx, NULL, sender_main, NULL);
        pthread_join(tx, NULL);
        pthread_join(rx, NULL);
    }
    printf("RESULT impl=%s mode=%s payload=%zu sent=%ld received=%ld seconds=%.6f rx_cpu_us=%.0f tx_cpu_us=%.0f\n",
           names[impl], drain_mode ? "drain" : "stream", payload, count, received, rx_seconds, rx_cpu_us, tx_cpu_us);
    if (uses_library()) {
        mr_udp_free(rx_udp);
        mr_udp_free(tx_udp);
    } else {
        close(rx_fd);
        close(tx_fd);
    }
    return 0;
}
