#include "common/traffic.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "packet_format.hpp"

namespace ndisshm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// How long to wait when no stream could send: long enough to let a guest on
// a shared core give slots back, short enough not to idle a fast one.
constexpr auto kRetryPause = std::chrono::microseconds(20);
// How often the generator checks whether its guests are still there.
constexpr double kGoneCheckS = 0.1;

}  // namespace

const char* path_name(Path p) { return p == Path::ZeroCopy ? "zero-copy" : "copy"; }

double gbit_per_s(uint64_t bytes, double seconds) {
    return seconds > 0 ? static_cast<double>(bytes) * 8.0 / seconds / 1e9 : 0.0;
}

TrafficGenerator::TrafficGenerator(const ndisshm::Hub& hub, Wire& wire, const TrafficOptions& options)
    : hub_(hub), wire_(wire), options_(options) {
    options_.batch = std::clamp<uint32_t>(options_.batch, 1, support::kVariants);
    for (uint32_t length : options_.packet_sizes) {
        Source s{length, {}, {}};
        for (uint32_t v = 0; v < support::kVariants; ++v) {
            s.variants.emplace_back(length);
            s.sums.push_back(support::fill_payload(s.variants.back().data(), length, v));
        }
        sources_.push_back(std::move(s));
    }
}

Stream& TrafficGenerator::add_stream(uint32_t guest_id, uint32_t guest_queue, uint32_t host_queue) {
    Stream& s = streams_[guest_id];
    s = Stream{};
    s.guest_id = guest_id;
    s.guest_queue = guest_queue;
    s.host_queue = host_queue;
    return s;
}

void TrafficGenerator::remove_stream(uint32_t guest_id) { streams_.erase(guest_id); }

// Builds packets next_seq .. next_seq + count - 1 and offers them; returns
// how many went. Packets within one batch use distinct buffers (the batch is
// at most kVariants long and the variant is seq % kVariants), and a wire
// copies them before returning, so the buffers are free again at once.
size_t TrafficGenerator::send(Path path, Stream& s, size_t count) {
    ndisshm_hub_packet packets[support::kVariants];
    const size_t sizes = sources_.size();
    for (size_t i = 0; i < count; ++i) {
        const uint64_t seq = s.next_seq + i;
        Source& src = sources_[seq % sizes];
        const auto v = static_cast<uint32_t>(seq % support::kVariants);
        std::byte* p = src.variants[v].data();
        support::stamp(p, src.length, seq, src.sums[v], s.guest_queue);
        packets[i] = {p, src.length, 0};
    }
    const size_t sent = wire_.send(path, s, {packets, count});
    Counters& c = path == Path::ZeroCopy ? s.zero_copy : s.copy;
    for (size_t i = 0; i < sent; ++i) c.bytes += packets[i].length;
    c.packets += sent;
    if (sent < count) ++c.retries;
    s.next_seq += sent;
    return sent;
}

void TrafficGenerator::mark_gone_streams() {
    const std::vector<ndisshm_hub_guest_info> running = hub_.guests();
    for (auto& entry : streams_) {
        auto& s = entry.second;  // not a structured binding: clang 14 (the fuzz build) cannot capture one
        const bool there = std::any_of(running.begin(), running.end(), [&](const auto& g) {
            return g.guest_id == s.guest_id && g.queue_id == s.guest_queue;
        });
        if (!there) s.gone = true;
    }
}

PhaseResult TrafficGenerator::run(Path path, double seconds, const std::atomic<bool>& stop,
                                  const std::function<void(const PhaseResult&)>& tick, double tick_s) {
    PhaseResult r;
    r.path = path;
    std::map<uint32_t, uint64_t> sent_in_phase;  // for the rate
    const auto start = Clock::now();
    const double cpu_start = thread_cpu_seconds();
    double next_tick = tick_s, next_gone_check = kGoneCheckS;
    auto totals = [&] {
        Counters t;
        for (const auto& [id, s] : streams_) {
            const Counters& c = path == Path::ZeroCopy ? s.zero_copy : s.copy;
            t.packets += c.packets;
            t.bytes += c.bytes;
            t.retries += c.retries;
        }
        return t;
    };
    const Counters before = totals();
    // Paced: nothing is due for about one packet's interval; else the wire
    // took nothing (every offer a retry).
    auto pause = kRetryPause;
    if (options_.rate_pps != 0)
        pause = std::clamp<std::chrono::microseconds>(std::chrono::microseconds(1'000'000 / options_.rate_pps),
                                                      kRetryPause, std::chrono::microseconds(1000));
    auto fill = [&](double elapsed) {
        const Counters now = totals();
        r.seconds = elapsed;
        r.cpu_seconds = thread_cpu_seconds() - cpu_start;
        r.total = {now.packets - before.packets, now.bytes - before.bytes, now.retries - before.retries};
    };
    for (;;) {
        const double elapsed = since(start);
        if (elapsed >= seconds) break;
        if (stop.load(std::memory_order_relaxed)) {
            r.interrupted = true;
            break;
        }
        bool moved = false;
        for (auto& [id, s] : streams_) {
            if (s.gone || (path == Path::Copy && s.host_queue == 0)) continue;
            uint64_t want = std::min<uint64_t>(options_.batch, wire_.room(s));
            if (options_.rate_pps != 0) {
                const auto due = static_cast<uint64_t>(std::floor(elapsed * static_cast<double>(options_.rate_pps)));
                const uint64_t done = sent_in_phase[id];
                want = due > done ? std::min<uint64_t>(due - done, want) : 0;
            }
            if (want == 0) continue;
            const size_t sent = send(path, s, static_cast<size_t>(want));
            sent_in_phase[id] += sent;
            moved = moved || sent != 0;
        }
        if (elapsed >= next_gone_check) {
            mark_gone_streams();
            next_gone_check = elapsed + kGoneCheckS;
        }
        if (!moved) std::this_thread::sleep_for(pause);
        if (tick && elapsed >= next_tick) {
            fill(elapsed);
            tick(r);
            next_tick = elapsed + tick_s;
        }
    }
    fill(since(start));
    return r;
}

}  // namespace ndisshm::cli
