#include "zero_copy_rig.hpp"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "packet_format.hpp"

namespace zero_copy {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kHostQueue = 1000;  // outside the guests' range [1, 2)
constexpr int kGuestUpTimeoutMs = 10000;
constexpr int kStallTimeoutMs = 5000;
constexpr int kDrainTimeoutMs = 5000;
constexpr int kReapTimeoutMs = 5000;
constexpr auto kWindowSleep = std::chrono::microseconds(20);

uint64_t clock_ns(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Source::Source(uint32_t length) : length_(length), stride_((length + 63u) & ~size_t{63}) {
    static_assert(kBatch <= ndisshm::support::kVariants);
    bytes_.resize(stride_ * kBatch);
    for (uint32_t i = 0; i < kBatch; ++i)
        sums_.push_back(ndisshm::support::fill_payload(bytes_.data() + i * stride_, length, i));
}

void Source::fill(uint64_t seq, uint32_t stream, ndisshm_hub_packet* out) {
    for (uint32_t i = 0; i < kBatch; ++i) {
        std::byte* p = bytes_.data() + i * stride_;
        ndisshm::support::stamp(p, length_, seq + i, sums_[i], stream);
        out[i] = {p, length_, 0};
    }
}

uint64_t thread_cpu_ns() {
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}
uint64_t process_cpu_ns() {
    return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

uint64_t process_cpu_ns(pid_t pid) {
    // The thread group leader's run time in ns (the guest has one thread).
    std::ifstream in("/proc/" + std::to_string(pid) + "/schedstat");
    uint64_t ns = 0;
    in >> ns;
    return in ? ns : 0;
}

Rig::Rig(uint32_t packet_bytes, GuestStyle style)
    : source_(packet_bytes),
      style_(style),
      slot_bytes_(packet_bytes <= 2048 ? 2048 : (packet_bytes + 1023u) & ~1023u) {}

std::unique_ptr<Rig> Rig::make(uint32_t packet_bytes, const std::string& guest_path, GuestStyle style,
                               std::string* error) {
    std::unique_ptr<Rig> rig(new Rig(packet_bytes, style));
    if (!rig->start(guest_path)) {
        *error = rig->error_;
        return nullptr;  // the destructor stops the hub and reaps the guest
    }
    return rig;
}

void Rig::log_line(void* rig, const char* line) {
    auto* self = static_cast<Rig*>(rig);
    std::lock_guard lock(self->log_mu_);
    if (self->hub_log_.size() == 8) self->hub_log_.erase(self->hub_log_.begin());
    self->hub_log_.emplace_back(line);
}

bool Rig::fail(std::string why) {
    std::lock_guard lock(log_mu_);
    for (const auto& line : hub_log_) why += "; hub: " + line;
    error_ = std::move(why);
    return false;
}

bool Rig::start(const std::string& guest_path) {
    char dir[] = "/tmp/ndisshm-zcbench-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return fail(std::string("mkdtemp: ") + std::strerror(errno));
    dir_ = dir;
    const std::string socket = dir_ + "/host.sock";

    // Set up as a driver's runtime is in every benchmark here: verifier on,
    // reports counted rather than printed.
    ndisshm_runtime_config rc;
    ndisshm_runtime_config_init(&rc);
    rc.verifier = 1;
    rc.report_to_stderr = 0;
    if (NDIS_STATUS s = ndisshm_runtime_create(&rc, &runtime_, nullptr, 0); s != NDIS_STATUS_SUCCESS)
        return fail(std::string("ndisshm_runtime_create: ") + ndisshm_status_name(s));
    ndisshm_hub_config c;
    ndisshm_hub_config_init(&c);
    c.socket_path = socket.c_str();
    c.max_guests = 1;
    c.blocks_per_queue = kBlocksPerQueue;
    c.block_bytes = kBlockBytes;
    c.slot_bytes = slot_bytes_;
    c.ring_size = kRingSize;
    c.serve_control = 0;
    c.log = &Rig::log_line;
    c.log_context = this;
    char err[256] = {};
    if (ndisshm_hub_create(runtime_, &c, &hub_, err, sizeof(err)) != NDIS_STATUS_SUCCESS)
        return fail(std::string("ndisshm_hub_create: ") + err);
    if (ndisshm_hub_start(hub_, err, sizeof(err)) != NDIS_STATUS_SUCCESS)
        return fail(std::string("ndisshm_hub_start: ") + err);
    if (NDIS_STATUS s = ndisshm_hub_host_queue_create(hub_, kHostQueue, nullptr); s != NDIS_STATUS_SUCCESS)
        return fail(std::string("ndisshm_hub_host_queue_create: ") + ndisshm_status_name(s));
    if (!spawn_guest(guest_path)) return false;

    const auto deadline = Clock::now() + std::chrono::milliseconds(kGuestUpTimeoutMs);
    while (ndisshm_hub_wait_guests(hub_, 1, 100) == 0) {
        if (!guest_running()) return false;
        if (Clock::now() >= deadline) return fail("the guest did not connect within 10 s");
    }
    ndisshm_hub_guest_info g{};
    if (ndisshm_hub_list_guests(hub_, &g, 1) != 1) return fail("the hub lists no guest");
    guest_queue_ = g.queue_id;
    slots_ = static_cast<uint32_t>(guest_queue_info().slots);
    if (slots_ < 4 * kBatch) return fail("the guest's queue has " + std::to_string(slots_) + " slots");
    // What the guest may hold at once: its ring (the hub enforces it).
    window_ = std::min(slots_, kRingSize);

    // Every slot of both queues written and read once, so no timed packet
    // pays a first touch of a page in either process.
    for (Path p : {Path::ZeroCopy, Path::Copy})
        for (uint32_t i = 0; i < 2 * slots_ / kBatch; ++i)
            if (!send(p)) return false;
    if (!drain()) return false;
    stalls_ = 0;
    return true;
}

bool Rig::spawn_guest(const std::string& guest_path) {
    // The counters page: a memfd the guest inherits (no close-on-exec) and
    // maps; the parent's copy of the fd is closed once the guest has it.
    const int fd = ::memfd_create("ndisshm-bench-guest-counters", 0);
    if (fd < 0) return fail(std::string("memfd_create: ") + std::strerror(errno));
    void* page = MAP_FAILED;
    if (::ftruncate(fd, 4096) == 0) page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (page == MAP_FAILED) {
        ::close(fd);
        return fail(std::string("counters page: ") + std::strerror(errno));
    }
    counters_ = static_cast<GuestCounters*>(page);
    // Twice the queue's buffers, as the demo gives its guests: the guest
    // provider never runs short of room to carve them.
    const std::string memory = std::to_string(uint64_t{2} * kBlocksPerQueue * kBlockBytes);
    const std::string socket = dir_ + "/host.sock";
    // The guest inherits the counters' fd (no close-on-exec) and prints
    // nothing on stdout. A process group of its own: if the bench dies while
    // the guest is stopped (stop_guest), the group is orphaned and the kernel
    // sends it SIGHUP and SIGCONT, so no stopped guest is left behind.
    ndisshm::support::SpawnOptions spawn;
    spawn.own_process_group = true;
    spawn.capture_stdout = false;
    guest_ = std::make_unique<ndisshm::support::ChildProcess>(
        std::vector<std::string>{guest_path, socket, memory, std::to_string(fd), std::to_string(::getpid()),
                                 style_.rxonly ? "rxonly" : "verify", style_.busy ? "busy" : "sleep"},
        spawn);
    ::close(fd);
    if (!guest_->started()) return fail(guest_->error());
    return true;
}

bool Rig::guest_running() {
    if (!guest_ || !guest_->started()) return fail("the guest has exited");
    if (guest_->running()) return true;
    return fail("the guest exited: " + guest_->how());
}

bool Rig::stop_guest() {
    // Stopped for sure before the NIC sends: stop() waits for the stop.
    if (!guest_ || !guest_->stop()) return fail("the guest exited: " + (guest_ ? guest_->how() : std::string()));
    return true;
}

bool Rig::continue_guest() {
    if (guest_) guest_->resume();
    return true;
}

void Rig::reap_guest() {
    if (!guest_) return;
    guest_->resume();
    guest_->finish(kReapTimeoutMs);
}

Rig::~Rig() {
    ndisshm_hub_destroy(hub_);  // BYE: the guest exits by itself
    reap_guest();
    ndisshm_runtime_destroy(runtime_);
    if (counters_ != nullptr) ::munmap(counters_, 4096);
    if (!dir_.empty()) ::rmdir(dir_.c_str());
}

ndisshm_hub_queue_info Rig::guest_queue_info() const {
    ndisshm_hub_queue_info q[4];
    const size_t n = std::min<size_t>(4, ndisshm_hub_list_queues(hub_, q, 4));
    for (size_t i = 0; i < n; ++i)
        if (q[i].queue_id == guest_queue_) return q[i];
    return {};
}

bool Rig::send(Path path) {
    source_.fill(next_seq_, guest_queue_, batch_);
    size_t done = 0;
    const auto start = Clock::now();
    for (;;) {
        const size_t left = kBatch - done;
        done += path == Path::ZeroCopy
                    ? ndisshm_hub_deliver_batch(hub_, guest_queue_, batch_ + done, left)
                    : ndisshm_hub_deliver_copy_batch(hub_, kHostQueue, guest_queue_, batch_ + done, left);
        if (done == kBatch) break;
        // The guest holds a full ring: offer the rest again (the next offer
        // reaps what it gave back meanwhile), spinning on a core of our own,
        // else sleeping so that the guest gets the CPU.
        ++stalls_;
        if (spin_)
            std::this_thread::yield();
        else
            std::this_thread::sleep_for(kWindowSleep);
        if (Clock::now() - start > std::chrono::milliseconds(kStallTimeoutMs))
            return guest_running() && fail("the hub took no packet for 5 s");
    }
    next_seq_ += kBatch;
    return true;
}

uint64_t Rig::kicks() const {
    ndisshm_hub_stats st{};
    ndisshm_hub_get_stats(hub_, &st);
    return st.kicks;
}

uint64_t Rig::returned() const {
    ndisshm_hub_stats st{};
    ndisshm_hub_get_stats(hub_, &st);
    return st.returned;
}

uint64_t Rig::dropped() const {
    ndisshm_hub_stats st{};
    ndisshm_hub_get_stats(hub_, &st);
    return st.dropped;
}

bool Rig::drain() {
    const auto deadline = Clock::now() + std::chrono::milliseconds(kDrainTimeoutMs);
    for (;;) {
        if (guest_packets() == sent() && guest_queue_info().outstanding == 0) return true;
        if (!guest_running()) return false;
        if (Clock::now() >= deadline)
            return fail("drain: after 5 s the guest has read " + std::to_string(guest_packets()) + " of " +
                        std::to_string(sent()) + " packets and holds " +
                        std::to_string(guest_queue_info().outstanding) + " slots");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

std::string Rig::check_guest() const {
    const uint64_t packets = guest_packets(), verified = counters_->verified.load(std::memory_order_relaxed);
    const uint64_t corrupt = counters_->corrupt.load(std::memory_order_relaxed);
    const uint64_t lost = counters_->lost.load(std::memory_order_relaxed);
    // rxonly reads headers only: every packet must have arrived, nothing more is checked.
    if (packets == sent() && (style_.rxonly || (verified == packets && corrupt == 0 && lost == 0))) return {};
    return "the guest read " + std::to_string(packets) + " of " + std::to_string(sent()) +
           " packets sent: " + std::to_string(verified) + " intact, " + std::to_string(corrupt) +
           " corrupt, " + std::to_string(lost) + " out of sequence";
}

}  // namespace zero_copy
