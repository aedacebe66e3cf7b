/*
 * The bad-inputs table: every misuse short of use-after-free must return
 * its exact error status with a non-empty mr_last_error, never crash.
 *
 * Before each bad call a known "sentinel" parse error is recorded on this
 * thread; after the call the message must be a different one, so a stale
 * message left by an earlier failure does not count as the description.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "test_util.h"

static char g_sentinel[512];

static void prime_error(void)
{
    mr_addr a;
    (void)mr_addr_parse("sentinel-not-an-address-zzz", &a);
    last_err(g_sentinel, sizeof g_sentinel);
}

static void check_fresh(const char *file, int line, const char *expr, int want)
{
    char now[512];
    if (want == MR_PARSE) {
        return; /* a parse error may legitimately reuse the same text */
    }
    last_err(now, sizeof now);
    check_true(file, line, strcmp(now, g_sentinel) != 0, expr,
               "mr_last_error was not updated by this failure (still \"%s\")", now);
}

#define BAD(expr, want)                                                                        \
    do {                                                                                       \
        prime_error();                                                                         \
        CHECK_FAIL(expr, want);                                                                \
        check_fresh(__FILE__, __LINE__, #expr, (int)(want));                                   \
    } while (0)

static int fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static void test_null_handle(void)
{
    uint8_t buf[64];
    mr_datagram d;
    mr_addr a;
    mr_udp_counters s;
    size_t n = 77;
    memset(&d, 0, sizeof d);
    d.buf = buf;
    d.cap = sizeof buf;
    d.len = 4;
    CHECK_ST(mr_addr_parse("127.0.0.1:9", &d.addr), MR_OK);

    BAD(mr_udp_recv(NULL, &d, 1, 0, &n), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(n == 77 || n == 0, 1);
    n = 77;
    BAD(mr_udp_send(NULL, &d, 1, 0, &n), MR_INVALID_ARGUMENT);
    CHECK(n == 0 || n == 77, "sent = %zu", n);
    BAD(mr_udp_local_addr(NULL, &a), MR_INVALID_ARGUMENT);
    BAD(mr_udp_stats(NULL, &s), MR_INVALID_ARGUMENT);
    BAD(mr_udp_close(NULL), MR_INVALID_ARGUMENT);
    mr_udp_free(NULL);
    CHECK(1, "mr_udp_free(NULL) is a no-op");
    CHECK(mr_udp_backend(NULL) == MR_BACKEND_AUTO, "mr_udp_backend(NULL) = %d",
          (int)mr_udp_backend(NULL));
    prime_error();
    CHECK(mr_udp_fd(NULL) == -1, "mr_udp_fd(NULL) = %d", mr_udp_fd(NULL));
    CHECK(mr_last_error(NULL, 0) > 0, "no message after mr_udp_fd(NULL)");
    check_fresh(__FILE__, __LINE__, "mr_udp_fd(NULL)", MR_INVALID_ARGUMENT);
    BAD(mr_udp_config_init(NULL), MR_INVALID_ARGUMENT);
    BAD(mr_addr_format(NULL, (char *)buf, sizeof buf, NULL), MR_INVALID_ARGUMENT);
}

static void test_null_out(mr_udp *u)
{
    uint8_t buf[64];
    mr_datagram d;
    mr_addr self;
    mr_udp *out = (mr_udp *)&out; /* garbage, must be overwritten */
    int fds_before = count_fds();

    BAD(mr_udp_bind("127.0.0.1:0", NULL, NULL), MR_INVALID_ARGUMENT);
    CHECK(count_fds() == fds_before, "bind with out NULL leaked an fd (%d -> %d)", fds_before,
          count_fds());

    CHECK_ST(mr_udp_local_addr(u, &self), MR_OK);
    memset(&d, 0, sizeof d);
    d.buf = buf;
    d.cap = sizeof buf;
    d.len = 8;
    memset(buf, 'q', sizeof buf);
    d.addr = self;
    BAD(mr_udp_recv(u, &d, 1, 0, NULL), MR_INVALID_ARGUMENT);
    BAD(mr_udp_send(u, &d, 1, 0, NULL), MR_INVALID_ARGUMENT);
    BAD(mr_udp_local_addr(u, NULL), MR_INVALID_ARGUMENT);
    BAD(mr_udp_stats(u, NULL), MR_INVALID_ARGUMENT);
    BAD(mr_addr_parse("1.2.3.4:5", NULL), MR_INVALID_ARGUMENT);
    /* msgs NULL with n > 0. */
    {
        size_t n = 5;
        BAD(mr_udp_recv(u, NULL, 1, 0, &n), MR_INVALID_ARGUMENT);
        n = 5;
        BAD(mr_udp_send(u, NULL, 1, 0, &n), MR_INVALID_ARGUMENT);
        CHECK(n == 0 || n == 5, "sent = %zu", n);
    }
    /* The send with sent==NULL must not have sent anything. */
    {
        mr_datagram r;
        uint8_t rb[64];
        CHECK_ST(recv_one(u, rb, sizeof rb, 100, &r), MR_TIMEOUT);
    }
    /* Bind failure leaves *out NULL. */
    BAD(mr_udp_bind("nonsense", NULL, &out), MR_PARSE);
    CHECK(out == NULL, "bind failure left *out = %p", (void *)out);
}

static void test_counts_and_buffers(mr_udp *u)
{
    uint8_t buf[64];
    mr_datagram d, two[2];
    mr_addr self;
    size_t n;

    CHECK_ST(mr_udp_local_addr(u, &self), MR_OK);
    memset(&d, 0, sizeof d);
    d.buf = buf;
    d.cap = sizeof buf;
    d.len = 8;
    d.addr = self;
    memset(buf, 'x', sizeof buf);

    n = 5;
    BAD(mr_udp_recv(u, &d, 0, 0, &n), MR_INVALID_ARGUMENT);
    n = 5;
    BAD(mr_udp_send(u, &d, 0, 0, &n), MR_INVALID_ARGUMENT);
    CHECK(n == 0 || n == 5, "sent = %zu", n);

    /* Receive slot with buf NULL / cap 0. */
    d.buf = NULL;
    d.cap = sizeof buf;
    BAD(mr_udp_recv(u, &d, 1, 0, &n), MR_INVALID_ARGUMENT);
    d.buf = buf;
    d.cap = 0;
    BAD(mr_udp_recv(u, &d, 1, 0, &n), MR_INVALID_ARGUMENT);
    /* Second slot bad, first good: still rejected. */
    memset(two, 0, sizeof two);
    two[0].buf = buf;
    two[0].cap = sizeof buf;
    two[1].buf = NULL;
    two[1].cap = 10;
    BAD(mr_udp_recv(u, two, 2, 0, &n), MR_INVALID_ARGUMENT);

    /* Send with buf NULL and len > 0. */
    d.buf = NULL;
    d.cap = 8;
    d.len = 8;
    n = 5;
    BAD(mr_udp_send(u, &d, 1, 0, &n), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(n, 0);
    d.buf = buf;
    d.cap = sizeof buf;
}

static void test_truncation(uint32_t backend)
{
    mr_udp *rx = NULL, *tx = NULL;
    mr_addr ra;
    uint8_t big[1000], small[100], got[4096], got2[4096];
    mr_datagram d, pair[2];
    size_t n, i;
    int r;

    printf("-- truncation (%s)\n", backend_name(backend));
    r = BIND_WITH("127.0.0.1:0", backend, 0, &rx);
    if (r <= 0) {
        return;
    }
    if (BIND_WITH("127.0.0.1:0", backend, 0, &tx) <= 0) {
        mr_udp_free(rx);
        return;
    }
    CHECK_ST(mr_udp_local_addr(rx, &ra), MR_OK);
    for (i = 0; i < sizeof big; i++) {
        big[i] = (uint8_t)(i * 13 + 7);
    }
    CHECK_ST(send_one(tx, big, sizeof big, &ra, 1000), MR_OK);

    memset(&d, 0, sizeof d);
    d.buf = small;
    d.cap = sizeof small;
    n = 99;
    BAD(mr_udp_recv(rx, &d, 1, 1000, &n), MR_BUFFER_TOO_SMALL);
    CHECK_EQ_U(n, 0);
    /* Still there for a call with timeout 0, and again too small. */
    BAD(mr_udp_recv(rx, &d, 1, 0, &n), MR_BUFFER_TOO_SMALL);
    /* With a big buffer it arrives intact. */
    memset(got, 0, sizeof got);
    if (CHECK_ST(recv_one(rx, got, sizeof got, 1000, &d), MR_OK)) {
        CHECK_EQ_U(d.len, sizeof big);
        CHECK(memcmp(got, big, sizeof big) == 0, "payload corrupted after BUFFER_TOO_SMALL");
    }

    /* Two pending; slot 0 big, slot 1 small: one delivered, second kept. */
    big[0] = 1;
    CHECK_ST(send_one(tx, big, sizeof big, &ra, 1000), MR_OK);
    big[0] = 2;
    CHECK_ST(send_one(tx, big, sizeof big, &ra, 1000), MR_OK);
    sleep_ms(50);
    memset(pair, 0, sizeof pair);
    pair[0].buf = got;
    pair[0].cap = sizeof got;
    pair[1].buf = small;
    pair[1].cap = sizeof small;
    n = 0;
    if (CHECK_ST(mr_udp_recv(rx, pair, 2, 1000, &n), MR_OK)) {
        CHECK_EQ_U(n, 1);
        CHECK(pair[0].len == sizeof big && got[0] == 1, "first datagram len %zu tag %u",
              pair[0].len, (unsigned)got[0]);
    }
    memset(got2, 0, sizeof got2);
    if (CHECK_ST(recv_one(rx, got2, sizeof got2, 1000, &d), MR_OK)) {
        CHECK(d.len == sizeof big && got2[0] == 2 && memcmp(got2 + 1, big + 1, sizeof big - 1) == 0,
              "second datagram lost or corrupted (len %zu tag %u)", d.len, (unsigned)got2[0]);
    }
    CHECK_ST(recv_one(rx, got, sizeof got, 0, &d), MR_WOULD_BLOCK);
    mr_udp_free(tx);
    mr_udp_free(rx);
}

static void test_addresses(void)
{
    static const char *bad[] = {"",        "1.2.3.4",   "300.1.1.1:5", "[::1",     "host:80",
                                "::1:5",   "1.2.3.4:",  "1.2.3.4:x",   "[::1]",    "[::1]:",
                                "1.2.3.4:65536", " 1.2.3.4:5", "1.2.3.4:5 ", "[::1]:-1", "1.2.3:5",
                                "[fe80::1%]:5"};
    size_t i;
    mr_addr a;
    mr_udp *u;
    int fds_before = count_fds();
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (g_verbose) {
            printf("     address \"%s\"\n", bad[i]);
        }
        BAD(mr_addr_parse(bad[i], &a), MR_PARSE);
        u = (mr_udp *)&u;
        BAD(mr_udp_bind(bad[i], NULL, &u), MR_PARSE);
        CHECK(u == NULL, "\"%s\": *out not NULL after failed bind", bad[i]);
    }
    BAD(mr_addr_parse(NULL, &a), MR_INVALID_ARGUMENT);
    u = NULL;
    BAD(mr_udp_bind(NULL, NULL, &u), MR_INVALID_ARGUMENT);
    /* Invalid UTF-8. */
    BAD(mr_addr_parse("\xff\xfe:5", &a), MR_INVALID_ARGUMENT);
    BAD(mr_addr_parse("1.2.3.4:5\xc3", &a), MR_INVALID_ARGUMENT);
    BAD(mr_udp_bind("\xc3\x28:0", NULL, &u), MR_INVALID_ARGUMENT);
    CHECK(u == NULL, "*out not NULL");
    /* Formatting an address of unknown family. */
    {
        char buf[64];
        size_t len = 0;
        memset(&a, 0, sizeof a);
        a.family = 7;
        BAD(mr_addr_format(&a, buf, sizeof buf, &len), MR_INVALID_ARGUMENT);
    }
    CHECK(count_fds() == fds_before, "fd count changed %d -> %d", fds_before, count_fds());
}

static void test_config(void)
{
    mr_udp_config cfg;
    mr_udp *u = NULL;
    int fd;

    memset(&cfg, 0, sizeof cfg);
    BAD(mr_udp_bind("127.0.0.1:0", &cfg, &u), MR_INVALID_ARGUMENT);
    CHECK(u == NULL, "*out not NULL");

    CHECK_ST(mr_udp_config_init(&cfg), MR_OK);
    CHECK_EQ_U(cfg.struct_size, sizeof cfg);
    CHECK_EQ_U(cfg.backend, MR_BACKEND_AUTO);
    CHECK_EQ_U(cfg.flags, 0);
    CHECK_EQ_U(cfg.recv_buffers, 1024);
    CHECK_EQ_U(cfg.batch, 128);

    cfg.flags = 1u << 31;
    BAD(mr_udp_bind("127.0.0.1:0", &cfg, &u), MR_INVALID_ARGUMENT);
    cfg.flags = MR_UDP_PKTINFO << 1; /* the lowest bit no MR_UDP_* flag uses */
    BAD(mr_udp_bind("127.0.0.1:0", &cfg, &u), MR_INVALID_ARGUMENT);
    cfg.flags = MR_UDP_GSO | 0x100;
    BAD(mr_udp_bind("127.0.0.1:0", &cfg, &u), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_udp_config_init(&cfg), MR_OK);
    cfg.backend = 99;
    BAD(mr_udp_bind("127.0.0.1:0", &cfg, &u), MR_INVALID_ARGUMENT);
    CHECK_ST(mr_udp_config_init(&cfg), MR_OK);
    cfg.max_datagram = 70000;
    BAD(mr_udp_bind("127.0.0.1:0", &cfg, &u), MR_INVALID_ARGUMENT);

    /* The same checks through mr_udp_from_fd: the fd stays the caller's. */
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0, "socket");
    memset(&cfg, 0, sizeof cfg);
    BAD(mr_udp_from_fd(fd, &cfg, &u), MR_INVALID_ARGUMENT);
    CHECK(fd_is_open(fd), "fd closed after failed from_fd");
    CHECK_ST(mr_udp_config_init(&cfg), MR_OK);
    cfg.flags = 1u << 20;
    BAD(mr_udp_from_fd(fd, &cfg, &u), MR_INVALID_ARGUMENT);
    CHECK(fd_is_open(fd), "fd closed after failed from_fd");
    BAD(mr_udp_from_fd(fd, NULL, NULL), MR_INVALID_ARGUMENT);
    CHECK(fd_is_open(fd), "fd closed after failed from_fd");
    close(fd);
}

static void test_from_fd_bad(void)
{
    mr_udp *u = NULL;
    int p[2];
    int tcp;
    int fds_before = count_fds();

    BAD(mr_udp_from_fd(-1, NULL, &u), MR_INVALID_ARGUMENT);
    CHECK(u == NULL, "*out not NULL");
    BAD(mr_udp_from_fd(-5, NULL, &u), MR_INVALID_ARGUMENT);

    CHECK(pipe(p) == 0, "pipe");
    BAD(mr_udp_from_fd(p[0], NULL, &u), MR_INVALID_ARGUMENT);
    CHECK(fd_is_open(p[0]), "pipe fd closed by failed from_fd");
    CHECK(fd_is_open(p[1]), "pipe write fd closed");
    close(p[0]);
    close(p[1]);

    tcp = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(tcp >= 0, "socket(SOCK_STREAM)");
    BAD(mr_udp_from_fd(tcp, NULL, &u), MR_INVALID_ARGUMENT);
    CHECK(fd_is_open(tcp), "TCP fd closed by failed from_fd");
    close(tcp);

    /* A closed (not open) fd number. */
    {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        close(fd);
        BAD(mr_udp_from_fd(fd, NULL, &u), MR_INVALID_ARGUMENT);
    }
    CHECK(count_fds() == fds_before, "fd count changed %d -> %d", fds_before, count_fds());
}

static void test_send_bad(uint32_t backend)
{
    mr_udp *u = NULL, *rx = NULL, *u6 = NULL;
    mr_addr ra;
    uint8_t buf[3000], rb[4096];
    mr_datagram d[3], r;
    size_t sent;
    int i;

    printf("-- send validation (%s)\n", backend_name(backend));
    if (BIND_WITH("127.0.0.1:0", backend, 0, &u) <= 0) {
        return;
    }
    if (BIND_WITH("127.0.0.1:0", backend, 0, &rx) <= 0) {
        mr_udp_free(u);
        return;
    }
    CHECK_ST(mr_udp_local_addr(rx, &ra), MR_OK);
    memset(buf, 'm', sizeof buf);
    memset(d, 0, sizeof d);
    for (i = 0; i < 3; i++) {
        d[i].buf = buf;
        d[i].cap = sizeof buf;
        d[i].len = 100;
        d[i].addr = ra;
    }

    /* Family 7 on the last datagram: nothing at all is sent. */
    d[2].addr.family = 7;
    sent = 99;
    BAD(mr_udp_send(u, d, 3, 1000, &sent), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(sent, 0);
    sent = 99;
    BAD(mr_udp_send(u, &d[2], 1, 1000, &sent), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(sent, 0);
    d[2].addr = ra;

    /* v6 destination on a v4 socket. */
    CHECK_ST(mr_addr_parse("[::1]:9", &d[1].addr), MR_OK);
    d[1].addr.port = ra.port;
    sent = 99;
    BAD(mr_udp_send(u, d, 3, 1000, &sent), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(sent, 0);
    d[1].addr = ra;

    /* segment_size without MR_UDP_GSO. */
    d[0].len = 2400;
    d[0].segment_size = 1200;
    sent = 99;
    BAD(mr_udp_send(u, d, 1, 1000, &sent), MR_INVALID_ARGUMENT);
    CHECK_EQ_U(sent, 0);
    d[0].len = 100;
    d[0].segment_size = 0;

    /* None of the rejected batches delivered anything. */
    CHECK_ST(recv_one(rx, rb, sizeof rb, 100, &r), MR_TIMEOUT);

    /*
     * A v6-only socket cannot reach a v4 destination. The contract does not
     * say which error: MR_INVALID_ARGUMENT (checked up front) or MR_IO
     * (ENETUNREACH from the kernel) are both accepted; sent must be 0.
     */
    if (BIND_WITH("[::1]:0", backend, MR_UDP_V6ONLY, &u6) > 0) {
        mr_status st;
        sent = 99;
        prime_error();
        st = mr_udp_send(u6, d, 1, 1000, &sent);
        CHECK(st == MR_INVALID_ARGUMENT || st == MR_IO, "v4 destination on a v6-only socket: %s",
              st_name(st));
        CHECK(mr_last_error(NULL, 0) > 0, "no message");
        check_fresh(__FILE__, __LINE__, "send v4 on v6-only", (int)st);
        if (g_verbose) {
            printf("     v6-only -> v4: %s\n", st_name(st));
        }
        CHECK_EQ_U(sent, 0);
        mr_udp_free(u6);
    }

    /* After close: MR_CLOSED everywhere. */
    CHECK_ST(mr_udp_close(u), MR_OK);
    sent = 99;
    BAD(mr_udp_send(u, d, 1, 0, &sent), MR_CLOSED);
    CHECK_EQ_U(sent, 0);
    r.buf = rb;
    r.cap = sizeof rb;
    BAD(mr_udp_recv(u, &r, 1, 0, &sent), MR_CLOSED);
    BAD(mr_udp_recv(u, &r, 1, -1, &sent), MR_CLOSED);
    BAD(mr_udp_local_addr(u, &ra), MR_CLOSED);
    prime_error();
    CHECK(mr_udp_fd(u) == -1, "mr_udp_fd after close = %d", mr_udp_fd(u));
    CHECK(mr_last_error(NULL, 0) > 0, "no message after mr_udp_fd on a closed handle");
    check_fresh(__FILE__, __LINE__, "mr_udp_fd(closed)", MR_CLOSED);
    CHECK_ST(mr_udp_close(u), MR_OK);
    mr_udp_free(u);
    mr_udp_free(rx);
}

/* Nesting of `depth` arrays inside `{"<field>":...}` with `inner` at the
 * bottom; the caller frees it. */
static char *nested_json(const char *field, int depth, const char *inner)
{
    size_t flen = strlen(field), ilen = strlen(inner);
    char *s = malloc(flen + ilen + 2 * (size_t)depth + 8);
    char *p = s;
    int i;
    if (s == NULL) {
        return NULL;
    }
    p += sprintf(p, "{\"%s\":", field);
    for (i = 0; i < depth; i++) {
        *p++ = '[';
    }
    memcpy(p, inner, ilen);
    p += ilen;
    for (i = 0; i < depth; i++) {
        *p++ = ']';
    }
    *p++ = '}';
    *p = '\0';
    return s;
}

/* Every JSON input refuses nesting deeper than MR_JSON_MAX_DEPTH with
 * MR_PARSE and changes nothing; the deepest allowed input still works. */
static void test_json_depth(void)
{
    static const char *fields[] = {"DNSConfig", "PacketFilter", "SSHPolicy"};
    mr_bus *bus = NULL;
    mr_runtime *rt = NULL;
    mr_bytes before = {0}, after = {0};
    char *deep, *ok;
    size_t i;
    printf("-- JSON nested deeper than MR_JSON_MAX_DEPTH (%d)\n", MR_JSON_MAX_DEPTH);
    if (!CHECK_ST(mr_bus_new(NULL, &bus), MR_OK) || !CHECK_ST(mr_runtime_new(NULL, &rt), MR_OK)) {
        return;
    }
    CHECK_ST(mr_bus_apply(bus, (const uint8_t *)"{\"Peers\":[{\"ID\":1}]}", 20), MR_OK);
    CHECK_ST(mr_bus_netmap(bus, &before), MR_OK);
    for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        /* The top-level object is level 1. */
        deep = nested_json(fields[i], MR_JSON_MAX_DEPTH, "1");
        ok = nested_json(fields[i], MR_JSON_MAX_DEPTH - 1, "1");
        CHECK_FAIL(mr_bus_apply(bus, (const uint8_t *)deep, strlen(deep)), MR_PARSE);
        CHECK(strstr(last_err((char[256]){0}, 256), "deeper than") != NULL, "the message says why (%s)", fields[i]);
        CHECK_ST(mr_bus_netmap(bus, &after), MR_OK);
        CHECK(after.len == before.len && memcmp(after.ptr, before.ptr, after.len) == 0, "a refused %s changed nothing", fields[i]);
        mr_bytes_free(&after);
        CHECK_ST(mr_bus_apply(bus, (const uint8_t *)ok, strlen(ok)), MR_OK);
        mr_bytes_free(&before);
        CHECK_ST(mr_bus_netmap(bus, &before), MR_OK);
        free(deep);
        free(ok);
    }
    /* 100000 levels: refused quickly, no stack overflow anywhere. */
    deep = nested_json("DNSConfig", 100000, "");
    CHECK_FAIL(mr_bus_apply(bus, (const uint8_t *)deep, strlen(deep)), MR_PARSE);
    free(deep);
    deep = nested_json("ErrMessage", MR_JSON_MAX_DEPTH, "\"x\"");
    CHECK_FAIL(mr_bus_publish(bus, (const uint8_t *)deep, strlen(deep)), MR_PARSE);
    free(deep);
    deep = nested_json("backlog", MR_JSON_MAX_DEPTH, "1");
    {
        mr_bus *b2 = NULL;
        mr_runtime *r2 = NULL;
        CHECK_FAIL(mr_bus_new(deep, &b2), MR_PARSE);
        CHECK(b2 == NULL, "no bus made");
        CHECK_FAIL(mr_runtime_new(deep, &r2), MR_PARSE);
        CHECK(r2 == NULL, "no runtime made");
    }
    free(deep);
    /* A runtime configuration: a protocol's config, and route attrs. */
    {
        char *cfg, *attrs = nested_json("a", MR_JSON_MAX_DEPTH, "1");
        size_t n = strlen(attrs) + 200;
        cfg = malloc(n);
        snprintf(cfg, n, "{\"protocols\":[{\"name\":\"s\",\"kind\":\"static\",\"routes\":[{\"prefix\":\"198.18.0.0/24\",\"attrs\":%s}]}]}", attrs);
        CHECK_FAIL(mr_runtime_commit(rt, cfg, MR_COMMIT_SOFT), MR_PARSE);
        CHECK_ST(mr_runtime_show_protocols(rt, &after), MR_OK);
        CHECK(after.len == 2, "a refused config made no protocol (%.*s)", (int)after.len, (const char *)after.ptr);
        mr_bytes_free(&after);
        CHECK_ST(mr_runtime_commit(rt, "{\"protocols\":[{\"name\":\"h\",\"kind\":\"static\"}]}", MR_COMMIT_SOFT), MR_OK);
        CHECK_FAIL(mr_proto_import(rt, "h", "198.18.1.0/24", 0, attrs), MR_PARSE);
        free(cfg);
        free(attrs);
    }
    mr_bytes_free(&before);
    mr_runtime_free(rt);
    mr_bus_free(bus);
}

int main(int argc, char **argv)
{
    mr_udp *u = NULL;
    test_init(argc, argv);
    test_null_handle();
    if (CHECK_ST(mr_udp_bind("127.0.0.1:0", NULL, &u), MR_OK)) {
        test_null_out(u);
        test_counts_and_buffers(u);
        mr_udp_free(u);
    }
    test_addresses();
    test_config();
    test_from_fd_bad();
    test_truncation(MR_BACKEND_URING);
    test_truncation(MR_BACKEND_BATCH);
    test_send_bad(MR_BACKEND_URING);
    test_send_bad(MR_BACKEND_BATCH);
    test_json_depth();
    return test_finish("test_bad_input");
}
