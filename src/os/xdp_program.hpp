// The XDP program in front of this process's AF_XDP sockets: libxdp's
// default xsk program (xsk_def_xdp_prog.o, found where libxdp finds it),
// which redirects each frame of a receive queue whose entry in its XSK map is
// set to that socket, and passes every other frame to the stack.
//
// Why not let xsk_socket__create load it: libxdp 1.3 (Debian 12) leaks two
// file descriptors (a BPF map and a program) each time it loads the program
// without a bpffs mounted, and a host whose guests come and go would run out
// of descriptors. Here the same program is loaded with libbpf and attached
// with bpf_xdp_attach: one load per interface, shared by every socket of this
// process on it (a reference count), detached with the last.
//
// Calls must be made in the interface's network namespace (the index is
// looked up and the program attached there) and are serialised by a lock of
// their own.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.hpp"

namespace ndisshm::os {

// One interface's program, as a socket sees it.
struct XdpProgramRef {
    uint64_t netns_id = 0;  // the namespace's inode: index numbers repeat across namespaces
    int ifindex = 0;
    int map_fd = -1;  // the XSK map (owned by the registry; valid while the reference is held)
};

// Takes a reference on the program of `ifname` in the calling thread's
// namespace, loading and attaching it first if this process has none there
// (native XDP where the driver has it, generic otherwise). Fails if another
// XDP program is attached to the interface, or `queue` is beyond the map.
Result<XdpProgramRef> xsk_program_acquire(const std::string& ifname, uint32_t queue);

// Points queue `queue` of the program at socket `xsk_fd` / at nothing.
Status xsk_program_set(const XdpProgramRef& ref, uint32_t queue, int xsk_fd);
void xsk_program_clear(const XdpProgramRef& ref, uint32_t queue);

// Drops the reference; the last one detaches the program and closes it.
void xsk_program_release(const XdpProgramRef& ref);

}  // namespace ndisshm::os
