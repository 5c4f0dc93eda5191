#include "soak/guests.hpp"

#include <signal.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "packet_format.hpp"

namespace ndisshm::cli::soak {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kGoneWithinMs = 3000;  // the hub must have closed a killed guest's session by then
constexpr int kBackWithinMs = 10000; // after a host restart, a running guest must be running again by then
constexpr uint32_t kReconnectMs = 15000;  // the guests' reconnect_ms: longer than kBackWithinMs
constexpr size_t kLinesKept = 8;

}  // namespace

SoakGuests::SoakGuests(World& world, const SoakOptions& options, std::unique_ptr<ndisshm::Hub>& hub,
                       std::function<std::unique_ptr<ndisshm::Hub>()> make_hub, SoakHost& host)
    : world_(world),
      options_(options),
      hub_holder_(hub),
      make_hub_(std::move(make_hub)),
      host_(host),
      hub_(hub.get()),
      slots_(options.guests) {
    hub_adapter_ = hub_->adapter();
    socket_ = hub_->socket_path();
}

SoakGuests::~SoakGuests() {
    world_.stopping = true;
    join();
}

void SoakGuests::start(uint64_t seed) {
    rng_.seed(seed ^ 0xC2B2AE3D27D4EB4Full);
    if (options_.host_restart_ms != 0)
        next_restart_ = Clock::now() + std::chrono::milliseconds(rng_() % (2 * uint64_t{options_.host_restart_ms}));
    thread_ = std::thread([this] { run(); });
}

void SoakGuests::join() {
    if (thread_.joinable()) thread_.join();
}

void SoakGuests::run() {
    while (!world_.stopping.load(std::memory_order_relaxed)) {
        for (Slot& s : slots_) {
            if (s.process == nullptr) spawn(s);
            if (s.process == nullptr) continue;
            drain(s, false);
            if (s.process != nullptr && Clock::now() >= s.kill_at) kill(s);
        }
        // Packets to one running guest at a time, a few per turn: the guests check them, the hub's
        // data path runs while guests die under it.
        std::vector<Slot*> running;
        for (Slot& s : slots_)
            if (s.process != nullptr && s.running) running.push_back(&s);
        if (!running.empty()) deliver(*running[rng_() % running.size()]);
        check_dying(false);
        check_back();
        if (options_.host_restart_ms != 0 && Clock::now() >= next_restart_) {
            restart_host();
            if (hub_ == nullptr) break;  // no new hub: the failure says why
            next_restart_ =
                Clock::now() + std::chrono::milliseconds(rng_() % (2 * uint64_t{options_.host_restart_ms}));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    check_dying(true);
}

void SoakGuests::restart_host() {
    for (Slot& s : slots_)
        if (s.process != nullptr) drain(s, false);
    host_.swap_hub([this]() -> ndisshm::Hub* {
        // The host goes as a host shutting down does: BYE to each guest, and
        // every block freed through its provider before the adapter goes.
        hub_->stop();
        const ndisshm_hub_stats st = hub_->stats();
        add_hub_stats(earlier_, st);
        const ndisshm_adapter_stats a = hub_->adapter_stats();
        world_.counters.check(kHostBooksAtRestart);
        const std::string which = "host restart " + std::to_string(world_.counters.ops(kHostRestart) + 1);
        if (a.total.blocks != 0 || a.total.allocations != a.total.frees)
            world_.failures.add(which + ": the stopped hub's adapter has " + std::to_string(a.total.blocks) +
                                " blocks left, " + std::to_string(a.total.allocations) + " allocations, " +
                                std::to_string(a.total.frees) + " frees");
        if (st.accepted != st.closed)
            world_.failures.add(which + ": the stopped hub accepted " + std::to_string(st.accepted) +
                                " sessions and closed " + std::to_string(st.closed));
        hub_ = nullptr;
        hub_holder_.reset();
        try {
            hub_holder_ = make_hub_();
        } catch (const std::exception& e) {
            world_.failures.add(which + ": the new hub: " + e.what());
            world_.stopping = true;
            return nullptr;
        }
        hub_ = hub_holder_.get();
        hub_adapter_ = hub_->adapter();
        return hub_;
    });
    // The killed guests went with the old host.
    world_.counters.check(kGuestGone, dying_.size());
    dying_.clear();
    const auto back_by = Clock::now() + std::chrono::milliseconds(kBackWithinMs);
    for (Slot& s : slots_) {
        if (s.process == nullptr) continue;
        // Its blocks went with the old host's session; its lines until it
        // says D (lost) or R (back) are of that session, and its new queue
        // starts a new stream.
        forget_blocks(s);
        s.stale = true;
        if (s.running) s.back_by = back_by;
        s.running = false;
        s.queue = 0;
        s.next_seq = 1;
    }
    world_.counters.op(kHostRestart);
}

void SoakGuests::check_back() {
    const auto now = Clock::now();
    for (Slot& s : slots_) {
        if (s.process == nullptr || s.back_by == Clock::time_point{} || now < s.back_by) continue;
        std::string last;
        for (const auto& l : s.last_lines) last += " | " + l;
        world_.failures.add(who(s) + " was not running again " + std::to_string(kBackWithinMs) +
                            " ms after the host restart" + last);
        s.back_by = {};
    }
}

void SoakGuests::spawn(Slot& s) {
    const uint64_t n = ++serial_;
    s = Slot{};
    s.name = "soak-g" + std::to_string(n);
    s.base = (n % 1024 + 1) << 40;  // a guest physical base of its own, so addresses name the guest
    // A process group of its own: a Ctrl-C reaches the soak alone, which then ends its guests.
    s.process = std::make_unique<support::ChildProcess>(
        std::vector<std::string>{"ndisshm", "soak", "--guest-worker", socket_, "--guest-name", s.name,
                                 "--guest-memory", std::to_string(options_.guest_memory), "--guest-base",
                                 std::to_string(s.base), "--guest-reconnect",
                                 std::to_string(options_.host_restart_ms != 0 ? kReconnectMs : 0)},
        support::SpawnOptions{.program = "/proc/self/exe", .own_process_group = true});
    if (!s.process->started()) {
        world_.failures.add(who(s) + ": cannot start: " + s.process->error());
        s.process.reset();
        return;
    }
    ++spawned_;
    // One guest in three dies within its first 15 ms, most of them mid-handshake (the process starting,
    // HELLO, SET_MEMORY, its blocks arriving); the rest at any moment of their life.
    const uint64_t within =
        rng_() % 3 == 0 ? std::min<uint64_t>(15, options_.kill_after_ms) : options_.kill_after_ms;
    s.kill_at = Clock::now() + std::chrono::milliseconds(rng_() % within);
}

void SoakGuests::drain(Slot& s, bool expect_end) {
    std::vector<std::string> lines;
    const bool open = s.process->read_lines(lines);
    for (const auto& l : lines) handle(s, l);
    if (open || expect_end) return;
    // Its stdout closed before we killed it: it ended by itself, which no guest should.
    const int status = s.process->finish(2000);
    std::string last;
    for (const auto& l : s.last_lines) last += " | " + l;
    world_.failures.add(who(s) + " ended by itself (" + s.process->how() + ", status " +
                        std::to_string(status) + ")" + last);
    forget_blocks(s);
    packets_verified_ += s.packets;
    if (s.reconnected) packets_after_reconnect_ += s.packets - s.packets_at_reconnect;
    s.process.reset();
}

void SoakGuests::handle(Slot& s, const std::string& line) {
    s.last_lines.push_back(line);
    if (s.last_lines.size() > kLinesKept) s.last_lines.erase(s.last_lines.begin());
    std::istringstream in(line);
    std::string tag;
    in >> tag;
    if (s.stale && (tag == "Q" || tag == "B+" || tag == "B-")) return;  // the session before the restart
    if (tag == "D") {
        if (!s.stale) world_.failures.add(who(s) + " lost its host with no restart: " + line.substr(2));
        s.stale = false;
    } else if (tag == "R") {
        s.stale = false;
        if (!s.reconnected) s.packets_at_reconnect = s.packets;
        s.reconnected = true;
    } else if (tag == "Q") {
        in >> s.queue;
    } else if (tag == "B+") {
        uint64_t handle = 0, offset = 0, length = 0;
        uint32_t queue = 0;
        in >> handle >> offset >> length >> queue;
        block_added(s, handle, offset, length, queue);
    } else if (tag == "B-") {
        uint64_t handle = 0;
        in >> handle;
        if (auto it = s.blocks.find(handle); it != s.blocks.end()) {
            world_.ranges.remove(it->second, false);
            s.blocks.erase(it);
        }
    } else if (tag == "P") {
        in >> s.packets;
    } else if (tag == "X") {
        world_.failures.add(who(s) + " found: " + line.substr(2));
    } else if (tag != "E") {
        world_.failures.add(who(s) + " said something unexpected: " + line);
    }
}

void SoakGuests::block_added(Slot& s, uint64_t handle, uint64_t offset, uint64_t length, uint32_t queue) {
    // Read after the hub stopped: the block is freed by now, nothing is left to check it against.
    if (hub_stopped_) return;
    world_.counters.check(kGuestBlock);
    const std::string what = who(s) + " block " + std::to_string(handle);
    ndisshm_block_info info{};
    // The guest is alive (only this thread kills it), so its session and blocks are too.
    const NDIS_STATUS st = ndisshm_block_get_info(hub_adapter_, reinterpret_cast<NDIS_HANDLE>(handle), &info);
    if (st != NDIS_STATUS_SUCCESS) {
        world_.failures.add(what + ": the runtime has no such block: " + ndisshm_status_name(st));
        return;
    }
    std::string bad;
    if (queue != s.queue || info.queue_id != queue) bad += " queue " + std::to_string(info.queue_id);
    // A receive block, or the queue's rings (one block of Usage Other, whole pages).
    const bool rings = info.usage == NdisSharedMemoryUsageOther;
    if (info.length != length || (!rings && length != kGuestBlockBytes) || (rings && length % 4096 != 0))
        bad += " length " + std::to_string(info.length);
    if (info.first_address != s.base + offset) bad += " guest physical address";
    if (info.provider == nullptr || std::strcmp(info.provider, "default") == 0) bad += " provider";
    if (info.virtual_address == nullptr) bad += " address";
    if (!bad.empty()) {
        world_.failures.add(what + " (offset " + std::to_string(offset) +
                            "): the runtime's record differs:" + bad);
        return;
    }
    std::string clash;
    bool reused = false;
    const auto start = reinterpret_cast<uintptr_t>(info.virtual_address);
    world_.counters.check(kOverlap);
    if (!world_.ranges.add(start, length, what, &clash, &reused)) {
        world_.failures.add("live blocks overlap: " + clash);
        return;
    }
    s.blocks[handle] = start;
    if (!s.running && s.blocks.size() == kGuestBlocks) {
        s.running = true;
        world_.counters.op(kGuestConnect);
        if (s.back_by != Clock::time_point{}) {
            world_.counters.check(kGuestReconnected);
            s.back_by = {};
        }
    }
}

void SoakGuests::forget_blocks(Slot& s) {
    for (const auto& [handle, start] : s.blocks) world_.ranges.remove(start, false);
    s.blocks.clear();
}

void SoakGuests::kill(Slot& s) {
    drain(s, true);
    // Its blocks leave the live set before it dies: the hub frees them (and
    // unmaps its memory) as soon as it notices, after which the addresses may
    // be anyone's.
    forget_blocks(s);
    if (s.running) {
        for (const auto& g : hub_->guests())
            if (s.name == g.name) s.guest_id = g.guest_id;
    }
    s.process->kill_now();
    world_.counters.op(kGuestKill);
    if (!s.running) ++killed_connecting_;
    packets_verified_ += s.packets;
    if (s.reconnected) packets_after_reconnect_ += s.packets - s.packets_at_reconnect;
    dying_.push_back({s.name, s.guest_id, Clock::now() + std::chrono::milliseconds(kGoneWithinMs)});
    s.process.reset();
}

void SoakGuests::deliver(Slot& s) {
    for (int i = 0; i < 4; ++i) {
        // The stream is the guest's queue: a packet that reaches another guest fails its check.
        const uint32_t length = 16 + static_cast<uint32_t>(rng_() % (kGuestSlotBytes - 16 + 1));
        const auto packet = support::make_packet(s.next_seq, length, s.queue);
        const auto d = hub_->deliver(s.queue, packet);
        if (d != NDISSHM_HUB_DELIVERED) return;  // a full ring, or the guest just died: a NIC drops too
        ++s.next_seq;
        world_.counters.op(kDeliver);
    }
}

// A killed guest: the hub must end its session, free its queue and blocks.
void SoakGuests::check_dying(bool final) {
    for (auto it = dying_.begin(); it != dying_.end();) {
        bool listed = false;
        for (const auto& g : hub_->guests()) listed = listed || it->name == g.name;
        bool queue_left = false;
        if (!listed && it->guest_id != 0)
            for (const auto& q : hub_->queues())
                queue_left = queue_left || (q.kind == NDISSHM_HUB_QUEUE_GUEST && q.guest_id == it->guest_id);
        if (!listed && !queue_left) {
            world_.counters.check(kGuestGone);
            it = dying_.erase(it);
        } else if (Clock::now() >= it->deadline) {
            world_.failures.add("guest " + it->name + " was killed " + std::to_string(kGoneWithinMs) +
                                " ms ago and the hub still " + (listed ? "lists it" : "has its queue"));
            it = dying_.erase(it);
        } else if (final) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        } else {
            ++it;
        }
    }
}

void SoakGuests::finish_after_hub_stop() {
    hub_stopped_ = true;
    const bool reconnecting = options_.host_restart_ms != 0;
    for (Slot& s : slots_) {
        if (s.process == nullptr) continue;
        const auto deadline = Clock::now() + std::chrono::seconds(5);
        std::vector<std::string> lines;
        // A guest that reconnects does not end on BYE: once it has said it
        // lost its host (D), or at once if it had no session, it is told to
        // stop (SIGTERM) and ends as one that was stopped.
        bool lost = !s.running;
        bool told = false;
        if (reconnecting) s.stale = true;  // its D now is this stop's, not a surprise
        while (s.process->read_lines(lines) && Clock::now() < deadline) {
            for (const auto& l : lines) lost = lost || l.rfind("D ", 0) == 0;
            if (reconnecting && lost && !told) {
                s.process->signal(SIGTERM);
                told = true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        for (const auto& l : lines) handle(s, l);
        const int status = s.process->finish(std::max<int>(
            0, static_cast<int>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count())));
        std::string last;
        for (const auto& l : s.last_lines) last += " | " + l;
        // One not connected yet may find the socket gone: that ends it too, though not on BYE. Any must exit.
        const bool said_bye = !s.last_lines.empty() && s.last_lines.back().rfind("E host-bye", 0) == 0;
        if (status == 128 + SIGKILL)
            world_.failures.add(who(s) + " did not exit within 5 s of the hub stopping" + last);
        else if (s.running && (status != 0 || !said_bye))
            world_.failures.add(who(s) + " did not end on the host's BYE: " + s.process->how() + last);
        forget_blocks(s);
        packets_verified_ += s.packets;
        if (s.reconnected) packets_after_reconnect_ += s.packets - s.packets_at_reconnect;
        s.process.reset();
    }
}

}  // namespace ndisshm::cli::soak
