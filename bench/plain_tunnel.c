/*
 * plain_tunnel: the baseline for the tunnel benchmark. The same IP-over-UDP
 * tunnel as examples/c/tunnel.c, written the plain way: one packet per
 * read()/sendto() and recvfrom()/write() syscall, two threads, no meshring.
 *
 *   plain_tunnel TUN_NAME LOCAL_IP PORT PEER_IP [MTU]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int tun_fd, udp_fd;
static struct sockaddr_in peer;

static void *tun_to_udp(void *arg) {
    char buf[2048];
    (void)arg;
    for (;;) {
        ssize_t n = read(tun_fd, buf, sizeof buf);
        if (n <= 0) return NULL;
        sendto(udp_fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, sizeof peer);
    }
}

static void *udp_to_tun(void *arg) {
    char buf[2048];
    (void)arg;
    for (;;) {
        ssize_t n = recvfrom(udp_fd, buf, sizeof buf, 0, NULL, NULL);
        if (n <= 0) return NULL;
        if (write(tun_fd, buf, (size_t)n) < 0) continue;
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: plain_tunnel TUN_NAME LOCAL_IP PORT PEER_IP [MTU]\n");
        return 2;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    tun_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (tun_fd < 0 || ioctl(tun_fd, TUNSETIFF, &ifr) < 0) { perror("tun"); return 1; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    ifr.ifr_mtu = argc > 5 ? atoi(argv[5]) : 1420;
    if (ioctl(s, SIOCSIFMTU, &ifr) < 0) { perror("SIOCSIFMTU"); return 1; }
    close(s);
    udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
    int bufsize = 4 << 20; /* the same socket buffers as the meshring tunnel */
    setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
    setsockopt(udp_fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    inet_pton(AF_INET, argv[2], &local.sin_addr);
    if (bind(udp_fd, (struct sockaddr *)&local, sizeof local) < 0) { perror("bind"); return 1; }
    peer = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = local.sin_port};
    inet_pton(AF_INET, argv[4], &peer.sin_addr);
    printf("ready %s (plain read/write)\n", ifr.ifr_name);
    fflush(stdout);
    pthread_t a, b;
    pthread_create(&a, NULL, tun_to_udp, NULL);
    pthread_create(&b, NULL, udp_to_tun, NULL);
    pthread_join(a, NULL);
    return 0;
}
