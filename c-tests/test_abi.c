/*
 * ABI-level checks that need no sockets: status strings, version, last
 * error truncation, mr_bytes_free, logging, address parse/format.
 */
#include "test_util.h"

static void test_status_str(void)
{
    const char *s[15];
    int i, j;
    for (i = 0; i <= 14; i++) {
        s[i] = mr_status_str(i);
        CHECK(s[i] != NULL, "mr_status_str(%d) returned NULL", i);
        if (s[i] != NULL) {
            CHECK(s[i][0] != '\0', "mr_status_str(%d) is empty", i);
            if (g_verbose) {
                printf("     status %d: %s\n", i, s[i]);
            }
        }
    }
    for (i = 0; i <= 14; i++) {
        for (j = i + 1; j <= 14; j++) {
            if (s[i] != NULL && s[j] != NULL) {
                CHECK(strcmp(s[i], s[j]) != 0, "mr_status_str(%d) == mr_status_str(%d): \"%s\"",
                      i, j, s[i]);
            }
        }
    }
    /* The names are part of the string (used in diagnostics). */
    CHECK(s[0] != NULL && strstr(s[0], "MR_OK") != NULL, "got \"%s\"", s[0] ? s[0] : "");
    CHECK(s[3] != NULL && strstr(s[3], "MR_TIMEOUT") != NULL, "got \"%s\"", s[3] ? s[3] : "");
    CHECK(s[13] != NULL && strstr(s[13], "MR_NO_MEMORY") != NULL, "got \"%s\"",
          s[13] ? s[13] : "");
    CHECK(s[14] != NULL && strstr(s[14], "MR_AUTH") != NULL, "got \"%s\"",
          s[14] ? s[14] : "");
    {
        const char *u = mr_status_str(999);
        const char *m = mr_status_str(-1);
        const char *k = mr_status_str(15);
        CHECK(u != NULL && strstr(u, "unknown") != NULL, "mr_status_str(999) = \"%s\"",
              u ? u : "(null)");
        CHECK(m != NULL && strstr(m, "unknown") != NULL, "mr_status_str(-1) = \"%s\"",
              m ? m : "(null)");
        CHECK(k != NULL && strstr(k, "unknown") != NULL, "mr_status_str(15) = \"%s\"",
              k ? k : "(null)");
    }
    /* Static: the same pointer/contents every time. */
    CHECK(mr_status_str(5) == s[5], "mr_status_str is not static");
}

static void test_version(void)
{
    const char *v = mr_version();
    CHECK(v != NULL && strcmp(v, MR_VERSION) == 0, "mr_version() = \"%s\", header \"%s\"",
          v ? v : "(null)", MR_VERSION);
    CHECK_EQ_U(mr_version_number(), MR_VERSION_NUMBER);
    CHECK_EQ_U(MR_VERSION_NUMBER,
               MR_VERSION_MAJOR * 1000000 + MR_VERSION_MINOR * 1000 + MR_VERSION_PATCH);
}

static void test_last_error(void)
{
    mr_addr a;
    char full[512];
    char small[16];
    size_t n, n2, k;
    /* Produce a known failure on this thread. */
    CHECK_FAIL(mr_addr_parse("not-an-address", &a), MR_PARSE);
    n = mr_last_error(NULL, 0);
    CHECK(n > 4, "message length %zu, need > 4 to test truncation", n);
    n2 = mr_last_error(full, sizeof full);
    CHECK_EQ_U(n2, n);
    CHECK_EQ_U(strlen(full), n < sizeof full ? n : sizeof full - 1);
    /* cap 0 with a non-NULL buffer writes nothing. */
    memset(small, 'Z', sizeof small);
    CHECK_EQ_U(mr_last_error(small, 0), n);
    CHECK(small[0] == 'Z', "cap 0 wrote into the buffer");
    /* Truncation: cap 5 -> 4 chars + NUL, returns the full length. */
    memset(small, 'Z', sizeof small);
    CHECK_EQ_U(mr_last_error(small, 5), n);
    CHECK(small[4] == '\0', "small[4] = 0x%02x, want NUL", (unsigned char)small[4]);
    CHECK(strlen(small) == 4 && memcmp(small, full, 4) == 0, "truncated text \"%s\" vs \"%s\"",
          small, full);
    for (k = 5; k < sizeof small; k++) {
        if (small[k] != 'Z') {
            break;
        }
    }
    CHECK(k == sizeof small, "byte %zu beyond cap was overwritten", k);
    /* cap 1 -> just the NUL. */
    memset(small, 'Z', sizeof small);
    CHECK_EQ_U(mr_last_error(small, 1), n);
    CHECK(small[0] == '\0' && small[1] == 'Z', "cap 1 wrote %02x %02x", (unsigned char)small[0],
          (unsigned char)small[1]);
    /* Successful calls leave the message in place. */
    CHECK_ST(mr_addr_parse("1.2.3.4:5", &a), MR_OK);
    CHECK_EQ_U(mr_last_error(NULL, 0), n);
    /* mr_last_os_error is callable; no MR_IO happened here. */
    CHECK(mr_last_os_error() >= 0, "mr_last_os_error() = %d", mr_last_os_error());
}

struct thread_err {
    size_t len_before;
    size_t len_after;
    int st;
};

static void *other_thread_err(void *p)
{
    struct thread_err *t = p;
    mr_addr a;
    t->len_before = mr_last_error(NULL, 0);
    t->st = (int)mr_addr_parse(NULL, &a);
    t->len_after = mr_last_error(NULL, 0);
    return NULL;
}

static void test_last_error_thread_local(void)
{
    struct thread_err t;
    pthread_t th;
    mr_addr a;
    char mine[512], after[512];
    CHECK_FAIL(mr_addr_parse("x:y:z", &a), MR_PARSE);
    last_err(mine, sizeof mine);
    memset(&t, 0, sizeof t);
    CHECK(pthread_create(&th, NULL, other_thread_err, &t) == 0, "pthread_create");
    pthread_join(th, NULL);
    CHECK_EQ_U(t.len_before, 0);
    CHECK_ST(t.st, MR_INVALID_ARGUMENT);
    CHECK(t.len_after > 0, "no message on the other thread");
    last_err(after, sizeof after);
    CHECK(strcmp(mine, after) == 0, "other thread changed this thread's error: \"%s\" -> \"%s\"",
          mine, after);
}

static void test_bytes_free(void)
{
    mr_bytes b;
    b.ptr = NULL;
    b.len = 0;
    mr_bytes_free(&b);
    CHECK(b.ptr == NULL && b.len == 0, "mr_bytes_free({NULL,0}) changed it");
    mr_bytes_free(NULL);
    CHECK(1, "mr_bytes_free(NULL) returned");
}

struct log_count {
    pthread_mutex_t mu;
    int records;
    int bad;
};

static void count_log(void *userdata, enum mr_log_level level, const char *target,
                      const char *message)
{
    struct log_count *c = userdata;
    pthread_mutex_lock(&c->mu);
    c->records++;
    if (level < MR_LOG_ERROR || level > MR_LOG_TRACE || target == NULL || message == NULL) {
        c->bad++;
    }
    pthread_mutex_unlock(&c->mu);
}

static void test_logging(void)
{
    static struct log_count c;
    mr_udp *u = NULL;
    mr_addr a;
    int before;
    pthread_mutex_init(&c.mu, NULL);
    CHECK_ST(mr_log_init("warn"), MR_OK);
    CHECK_ST(mr_log_init("warn"), MR_OK); /* may be called again */
    CHECK_ST(mr_log_set_callback(count_log, &c), MR_OK);
    /* Make the library do some work at a verbose level to produce records. */
    CHECK_ST(mr_log_init("trace"), MR_OK);
    CHECK_ST(mr_udp_bind("127.0.0.1:0", NULL, &u), MR_OK);
    if (u != NULL) {
        CHECK_ST(mr_udp_local_addr(u, &a), MR_OK);
        CHECK_ST(mr_udp_close(u), MR_OK);
        mr_udp_free(u);
    }
    (void)mr_addr_parse("bogus", &a);
    pthread_mutex_lock(&c.mu);
    before = c.records;
    CHECK(c.bad == 0, "%d records with bad level/NULL strings", c.bad);
    pthread_mutex_unlock(&c.mu);
    printf("     log callback received %d records at trace level\n", before);
    CHECK_ST(mr_log_set_callback(NULL, NULL), MR_OK);
    CHECK_ST(mr_log_init("warn"), MR_OK);
    /* After removing the callback it is never called again. */
    u = NULL;
    CHECK_ST(mr_udp_bind("127.0.0.1:0", NULL, &u), MR_OK);
    mr_udp_free(u);
    pthread_mutex_lock(&c.mu);
    CHECK(c.records == before, "callback called %d times after removal", c.records - before);
    pthread_mutex_unlock(&c.mu);
    CHECK_ST(mr_log_init(NULL), MR_OK);
    CHECK_ST(mr_log_init("warn"), MR_OK);
}

/* A filter env_logger cannot parse is refused with the reason, and the
 * library writes nothing to stderr about it (with or without a callback). */
static void test_bad_log_filter(void)
{
    static struct log_count c;
    static const char *bad[] = {"meshring=bogus", "warn,meshring=zz", "meshring=debug=x", "a,b=nope"};
    char buf[256];
    FILE *cap = tmpfile();
    int saved = dup(2);
    size_t i;
    long written;
    pthread_mutex_init(&c.mu, NULL);
    if (!CHECK(cap != NULL && saved >= 0, "capture stderr")) {
        return;
    }
    fflush(stderr);
    dup2(fileno(cap), 2);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (i == 2) {
            mr_log_set_callback(count_log, &c);
        }
        CHECK_FAIL(mr_log_init(bad[i]), MR_INVALID_ARGUMENT);
        CHECK(strstr(last_err(buf, sizeof buf), "log filter") != NULL, "the reason names the filter: %s", buf);
    }
    setenv("MESHRING_LOG", "meshring=bogus", 1);
    CHECK_FAIL(mr_log_init(NULL), MR_INVALID_ARGUMENT);
    CHECK(strstr(last_err(buf, sizeof buf), "bogus") != NULL, "MESHRING_LOG's error says what: %s", buf);
    unsetenv("MESHRING_LOG");
    mr_log_set_callback(NULL, NULL);
    fflush(stderr);
    written = ftell(cap) >= 0 ? (long)lseek(2, 0, SEEK_CUR) : -1;
    dup2(saved, 2);
    close(saved);
    CHECK(written == 0, "the library wrote %ld bytes to stderr", written);
    fclose(cap);
    CHECK_ST(mr_log_init("warn"), MR_OK);
}

static void roundtrip(const char *text, uint16_t family, uint16_t port, uint32_t scope)
{
    mr_addr a, b;
    char buf[64];
    size_t len = 12345;
    memset(&a, 0xAB, sizeof a);
    if (!CHECK_ST(mr_addr_parse(text, &a), MR_OK)) {
        return;
    }
    CHECK(a.family == family && a.port == port && a.scope_id == scope,
          "%s parsed as family %u port %u scope %u", text, (unsigned)a.family, (unsigned)a.port,
          (unsigned)a.scope_id);
    CHECK_ST(mr_addr_format(&a, buf, sizeof buf, &len), MR_OK);
    CHECK(strcmp(buf, text) == 0, "format gave \"%s\", want \"%s\"", buf, text);
    CHECK_EQ_U(len, strlen(text));
    CHECK_ST(mr_addr_format(&a, buf, sizeof buf, NULL), MR_OK); /* len optional */
    CHECK_ST(mr_addr_parse(buf, &b), MR_OK);
    CHECK(addr_equal(&a, &b), "re-parse of \"%s\" differs", buf);
}

static void test_addr(void)
{
    mr_addr a;
    char buf[64];
    size_t len;
    static const uint8_t v6one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t fe80[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

    roundtrip("1.2.3.4:5", 4, 5, 0);
    roundtrip("[::1]:5", 6, 5, 0);
    roundtrip("[fe80::1%2]:5", 6, 5, 2);
    roundtrip("255.255.255.255:65535", 4, 65535, 0);

    CHECK_ST(mr_addr_parse("1.2.3.4:5", &a), MR_OK);
    CHECK(a.ip[0] == 1 && a.ip[1] == 2 && a.ip[2] == 3 && a.ip[3] == 4, "v4 bytes wrong");
    CHECK_ST(mr_addr_parse("[::1]:5", &a), MR_OK);
    CHECK(memcmp(a.ip, v6one, 16) == 0, "::1 bytes wrong");
    CHECK_ST(mr_addr_parse("[fe80::1%2]:5", &a), MR_OK);
    CHECK(memcmp(a.ip, fe80, 16) == 0, "fe80::1 bytes wrong");
    /* Interface name zone (lo is index 1 on Linux). */
    if (CHECK_ST(mr_addr_parse("[fe80::1%lo]:7", &a), MR_OK)) {
        CHECK(a.scope_id == 1, "%%lo scope_id = %u", (unsigned)a.scope_id);
    }

    /* Too small: MR_BUFFER_TOO_SMALL with *len = the needed length. */
    CHECK_ST(mr_addr_parse("1.2.3.4:5", &a), MR_OK);
    len = 0;
    memset(buf, 'Z', sizeof buf);
    CHECK_FAIL(mr_addr_format(&a, buf, 4, &len), MR_BUFFER_TOO_SMALL);
    CHECK_EQ_U(len, 9);
    CHECK(buf[4] == 'Z', "wrote beyond cap");
    len = 0;
    CHECK_FAIL(mr_addr_format(&a, buf, 9, &len), MR_BUFFER_TOO_SMALL); /* no room for NUL */
    CHECK_EQ_U(len, 9);
    len = 0;
    CHECK_ST(mr_addr_format(&a, buf, 10, &len), MR_OK);
    CHECK(len == 9 && strcmp(buf, "1.2.3.4:5") == 0, "cap 10 gave \"%s\" len %zu", buf, len);

    CHECK_ST(mr_addr_parse("[fe80::1%2]:5", &a), MR_OK);
    len = 0;
    CHECK_FAIL(mr_addr_format(&a, buf, 3, &len), MR_BUFFER_TOO_SMALL);
    CHECK_EQ_U(len, strlen("[fe80::1%2]:5"));

    /* MR_ADDR_TEXT_MAX bytes always suffice, even for the longest form. */
    memset(&a, 0, sizeof a);
    a.family = 6;
    a.port = 65535;
    a.scope_id = 4294967295u;
    memset(a.ip, 0xff, 16);
    len = 0;
    CHECK_ST(mr_addr_format(&a, buf, MR_ADDR_TEXT_MAX, &len), MR_OK);
    CHECK(len < MR_ADDR_TEXT_MAX, "len %zu", len);
    CHECK_EQ_U(len, strlen("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"));
    if (g_verbose) {
        printf("     longest: %s\n", buf);
    }
    /* A realistic zone index too. */
    a.scope_id = 12;
    len = 0;
    CHECK_ST(mr_addr_format(&a, buf, MR_ADDR_TEXT_MAX, &len), MR_OK);
    CHECK(len < MR_ADDR_TEXT_MAX, "len %zu", len);
}

int main(int argc, char **argv)
{
    test_init(argc, argv);
    test_status_str();
    test_version();
    test_last_error();
    test_last_error_thread_local();
    test_bytes_free();
    test_logging();
    test_bad_log_filter();
    test_addr();
    return test_finish("test_abi");
}
