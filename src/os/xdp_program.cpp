// Linux implementation of xdp_program.hpp, over libbpf (and libxdp only to
// find the program's object file where libxdp keeps it).
#include "os/xdp_program.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace ndisshm::os {
namespace {

constexpr const char* kObject = "xsk_def_xdp_prog.o";  // libxdp's default program (kernels >= 5.3)
constexpr const char* kProgram = "xsk_def_prog";
constexpr const char* kMap = "xsks_map";
// XSK map entries: one per receive queue index. libxdp sizes it to the
// interface's queue count; a fixed bound keeps one program right for every
// queue a later socket may bind, for 8 KiB of map.
constexpr uint32_t kMaxQueues = 1024;

Error errno_error(std::string operation, int e) {
    return Error{std::move(operation), e, std::strerror(e)};
}

struct Loaded {
    xdp_program* program = nullptr;  // owns the bpf_object, the program and the map
    int prog_fd = -1;
    int map_fd = -1;
    uint32_t mode = 0;  // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE: how it was attached
    uint32_t refs = 0;
};

std::mutex registry_mu;
std::map<std::pair<uint64_t, int>, Loaded> registry;  // (netns inode, ifindex) -> program

Result<uint64_t> current_netns_id() {
    struct stat st {};
    if (::stat("/proc/thread-self/ns/net", &st) != 0)
        return errno_error("stat(/proc/thread-self/ns/net)", errno);
    return static_cast<uint64_t>(st.st_ino);
}

// Opens, loads and attaches the program on `ifindex`.
Result<Loaded> load(const std::string& ifname, int ifindex) {
    const std::string what = std::string(kObject) + " on " + ifname;
    Loaded l;
    l.program = xdp_program__find_file(kObject, nullptr, nullptr);
    if (const long e = libxdp_get_error(l.program); e != 0 || l.program == nullptr)
        return errno_error("xdp_program__find_file(" + std::string(kObject) + ")",
                           e != 0 ? static_cast<int>(-e) : ENOENT);
    auto fail = [&](const std::string& op, int err) {
        xdp_program__close(l.program);
        return errno_error(op + " for " + what, err);
    };
    bpf_object* obj = xdp_program__bpf_obj(l.program);
    bpf_map* map = bpf_object__find_map_by_name(obj, kMap);
    bpf_program* prog = bpf_object__find_program_by_name(obj, kProgram);
    if (map == nullptr || prog == nullptr) return fail("finding xsks_map and xsk_def_prog", ENOENT);
    if (int rc = bpf_map__set_max_entries(map, kMaxQueues); rc != 0)
        return fail("bpf_map__set_max_entries", -rc);
    if (int rc = bpf_object__load(obj); rc != 0) return fail("bpf_object__load", -rc);
    l.prog_fd = bpf_program__fd(prog);
    l.map_fd = bpf_map__fd(map);
    // Native XDP where the driver has it (veth does: the frame is redirected
    // before an skb is built), generic XDP otherwise. UPDATE_IF_NOEXIST: a
    // program someone else attached is never replaced.
    for (uint32_t mode : {uint32_t{XDP_FLAGS_DRV_MODE}, uint32_t{XDP_FLAGS_SKB_MODE}}) {
        const int rc = bpf_xdp_attach(ifindex, l.prog_fd, XDP_FLAGS_UPDATE_IF_NOEXIST | mode, nullptr);
        if (rc == 0) {
            l.mode = mode;
            return l;
        }
        if (rc == -EBUSY || rc == -EEXIST) {
            xdp_program__close(l.program);
            return Error{
                "bpf_xdp_attach for " + what, -rc,
                std::string(std::strerror(-rc)) + ": the interface has another XDP program attached"};
        }
        if (mode == XDP_FLAGS_SKB_MODE) return fail("bpf_xdp_attach(native, then generic)", -rc);
    }
    return fail("bpf_xdp_attach", EINVAL);
}

}  // namespace

Result<XdpProgramRef> xsk_program_acquire(const std::string& ifname, uint32_t queue) {
    if (queue >= kMaxQueues)
        return Error{
            "AF_XDP on " + ifname, EINVAL,
            "queue " + std::to_string(queue) + " is beyond the XSK map's " + std::to_string(kMaxQueues)};
    const unsigned ifindex = ::if_nametoindex(ifname.c_str());
    if (ifindex == 0) return errno_error("if_nametoindex(" + ifname + ")", errno);
    auto ns = current_netns_id();
    if (!ns) return ns.error();
    std::lock_guard lock(registry_mu);
    const auto key = std::make_pair(*ns, static_cast<int>(ifindex));
    auto it = registry.find(key);
    if (it == registry.end()) {
        auto l = load(ifname, static_cast<int>(ifindex));
        if (!l) return l.error();
        it = registry.emplace(key, *l).first;
    }
    ++it->second.refs;
    return XdpProgramRef{key.first, key.second, it->second.map_fd};
}

Status xsk_program_set(const XdpProgramRef& ref, uint32_t queue, int xsk_fd) {
    if (bpf_map_update_elem(ref.map_fd, &queue, &xsk_fd, 0) != 0)
        return errno_error("bpf_map_update_elem(xsks_map[" + std::to_string(queue) + "])", errno);
    return Ok{};
}

void xsk_program_clear(const XdpProgramRef& ref, uint32_t queue) {
    bpf_map_delete_elem(ref.map_fd, &queue);
}

void xsk_program_release(const XdpProgramRef& ref) {
    std::lock_guard lock(registry_mu);
    auto it = registry.find({ref.netns_id, ref.ifindex});
    if (it == registry.end() || --it->second.refs != 0) return;
    // Only our program is detached (REPLACE with the expected old program):
    // one someone attached since would be left alone.
    bpf_xdp_attach_opts opts{};
    opts.sz = sizeof(opts);
    opts.old_prog_fd = it->second.prog_fd;
    if (int rc = bpf_xdp_detach(ref.ifindex, it->second.mode | XDP_FLAGS_REPLACE, &opts);
        rc != 0 && rc != -ENODEV)
        std::fprintf(stderr, "ndisshm: detaching %s from interface %d: %s\n", kObject, ref.ifindex,
                     std::strerror(-rc));
    xdp_program__close(it->second.program);
    registry.erase(it);
}

}  // namespace ndisshm::os
