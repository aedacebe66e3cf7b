// Compile-only check that meshring.h is valid C++11 under
// -Wall -Wextra -Werror -pedantic and that its declarations are usable
// from C++ (extern "C", enum and struct names, function pointer types).
#include "meshring.h"

#include <cstddef>
#include <type_traits>

static_assert(MR_OK == 0 && MR_NO_MEMORY == 13, "status values are fixed");
static_assert(MR_VERSION_NUMBER == MR_VERSION_MAJOR * 1000000 + MR_VERSION_MINOR * 1000 + MR_VERSION_PATCH,
              "version macros agree");
static_assert(std::is_standard_layout<mr_addr>::value, "mr_addr is a C struct");
static_assert(sizeof(mr_addr) == 24, "mr_addr layout");
static_assert(offsetof(mr_addr, ip) == 8, "mr_addr layout");
static_assert(std::is_standard_layout<mr_datagram>::value, "mr_datagram is a C struct");
static_assert(std::is_standard_layout<mr_udp_config>::value, "mr_udp_config is a C struct");
static_assert(sizeof(mr_udp_config) == 32, "mr_udp_config layout");
static_assert(sizeof(mr_udp_counters) == 9 * sizeof(uint64_t), "mr_udp_counters layout");
static_assert((MR_UDP_GSO & MR_UDP_GRO & MR_UDP_V6ONLY & MR_UDP_REUSEPORT) == 0, "distinct flag bits");

namespace {

void on_log(void *, mr_log_level, const char *, const char *) {}

// Every export has the expected C++ type (takes its address, nothing runs).
struct Exports {
    mr_status (*addr_parse)(const char *, mr_addr *) = mr_addr_parse;
    mr_status (*addr_format)(const mr_addr *, char *, size_t, size_t *) = mr_addr_format;
    void (*bytes_free)(mr_bytes *) = mr_bytes_free;
    const char *(*status_str)(int) = mr_status_str;
    size_t (*last_error)(char *, size_t) = mr_last_error;
    int (*last_os_error)() = mr_last_os_error;
    mr_status (*log_init)(const char *) = mr_log_init;
    mr_status (*log_set_callback)(mr_log_callback, void *) = mr_log_set_callback;
    mr_status (*config_init)(mr_udp_config *) = mr_udp_config_init;
    mr_status (*bind)(const char *, const mr_udp_config *, mr_udp **) = mr_udp_bind;
    mr_status (*from_fd)(int, const mr_udp_config *, mr_udp **) = mr_udp_from_fd;
    mr_status (*recv)(mr_udp *, mr_datagram *, size_t, int32_t, size_t *) = mr_udp_recv;
    mr_status (*send)(mr_udp *, const mr_datagram *, size_t, int32_t, size_t *) = mr_udp_send;
    mr_status (*local_addr)(const mr_udp *, mr_addr *) = mr_udp_local_addr;
    mr_status (*stats)(const mr_udp *, mr_udp_counters *) = mr_udp_stats;
    mr_backend (*backend)(const mr_udp *) = mr_udp_backend;
    int (*fd)(const mr_udp *) = mr_udp_fd;
    mr_status (*close)(mr_udp *) = mr_udp_close;
    void (*free)(mr_udp *) = mr_udp_free;
    const char *(*version)() = mr_version;
    uint32_t (*version_number)() = mr_version_number;
    mr_log_callback cb = on_log;
};

}  // namespace

int header_cpp_use() {
    Exports e;
    mr_datagram d = mr_datagram();
    d.segment_size = 0;
    return e.cb != nullptr && d.buf == nullptr ? 0 : 1;
}
