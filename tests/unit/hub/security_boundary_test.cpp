// The claims of docs/security.md that no other test makes: no other user can
// reach the guest socket, and its directory must be ours and a directory (not
// a link to one); the control socket answers "stat" and nothing else; connections that never finish their
// handshake are bounded and dropped, so a flood cannot keep honest guests out
// for good; a guest writing over its receive buffers at any moment (even while
// the host writes packets into them) harms only its own packets: the host reads
// nothing back from guest memory, and the guest beside it is untouched.
#include <gtest/gtest.h>
#include <ndisshm/guest.h>
#include <ndisshm/hub.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ipc/channel.hpp"
#include "common/ipc_support.hpp"
#include "os/unix_socket.hpp"

namespace ndisshm::test {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kMaxGuests = 2;
constexpr uint32_t kPendingAllowed = 16;  // handshakes beyond max_guests (guest_hub.cpp's kPendingHandshakes)
constexpr int kHandshakeMs = 2000;

class SecurityBoundaryHub : public ::testing::Test {
protected:
    void SetUp() override {
        ::setenv("NDISSHM_QUIET", "1", 1);
        ASSERT_EQ(ndisshm_runtime_create(nullptr, &rt_, nullptr, 0), NDIS_STATUS_SUCCESS);
        ndisshm_runtime_set_violation_callback(rt_, &SecurityBoundaryHub::on_violation, this);
        ndisshm_hub_config c;
        ndisshm_hub_config_init(&c);
        socket_ = dir_.path() + "/run/host.sock";
        c.socket_path = socket_.c_str();
        c.max_guests = kMaxGuests;
        c.blocks_per_queue = 2;
        c.handshake_timeout_ms = kHandshakeMs;
        c.log = [](void* self, const char* line) {
            auto* t = static_cast<SecurityBoundaryHub*>(self);
            std::lock_guard lock(t->log_mu_);
            t->log_.emplace_back(line);
        };
        c.log_context = this;
        char err[256] = {};
        ASSERT_EQ(ndisshm_hub_create(rt_, &c, &hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
        ASSERT_EQ(ndisshm_hub_start(hub_, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    }
    void TearDown() override {
        ndisshm_hub_destroy(hub_);
        ndisshm_runtime_destroy(rt_);
        EXPECT_EQ(violations_, 0) << "verifier findings";
    }
    static void on_violation(void* self, const ndisshm_violation* v) {
        static_cast<SecurityBoundaryHub*>(self)->violations_++;
        ADD_FAILURE() << v->message;
    }
    ndisshm_hub_stats stats() const {
        ndisshm_hub_stats s{};
        ndisshm_hub_get_stats(hub_, &s);
        return s;
    }
    // Waits up to `ms` for `done`.
    template <typename F>
    static bool eventually(F done, int ms = 3000) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            std::this_thread::sleep_for(5ms);
        }
        return true;
    }

    std::vector<std::string> log() {
        std::lock_guard lock(log_mu_);
        return log_;
    }

    test::TempDir dir_;
    std::mutex log_mu_;
    std::vector<std::string> log_;
    std::string socket_;
    ndisshm_runtime* rt_ = nullptr;
    ndisshm_hub* hub_ = nullptr;
    std::atomic<int> violations_{0};
};

// A guest of the guest library on a thread of its own. With `scribble`, each
// packet it reads makes it write garbage over the whole block the packet is
// in: the slots the host is writing into now included.
class ThreadGuest {
public:
    ThreadGuest(const std::string& socket, bool scribble, std::string name = "")
        : scribble_(scribble), name_(name.empty() ? (scribble ? "scribbler" : "honest") : std::move(name)) {
        thread_ = std::thread([this, socket] { run(socket); });
    }
    ~ThreadGuest() {
        stop_ = true;
        thread_.join();
    }
    std::atomic<uint64_t> packets{0}, intact{0};
    std::atomic<bool> attached{false};
    std::atomic<int> end{-1};

private:
    void run(const std::string& socket) {
        ndisshm_guest_config c;
        ndisshm_guest_config_init(&c);
        c.name = name_.c_str();
        c.memory_bytes = 4 << 20;
        c.context = this;
        c.on_event = [](void* self, const ndisshm_guest_event* e) {
            auto* g = static_cast<ThreadGuest*>(self);
            if (e->kind == NDISSHM_GUEST_BLOCK_ADDED) g->block_bytes_[e->handle] = e->length;
        };
        c.on_packet = [](void* self, const ndisshm_guest_packet* p) {
            auto* g = static_cast<ThreadGuest*>(self);
            const auto* d = static_cast<const unsigned char*>(p->data);
            bool ok = p->length == 512;
            for (uint32_t i = 0; ok && i < p->length; ++i) ok = d[i] == 0x5A;
            if (ok) g->intact++;
            g->packets++;
            // The guest owns this memory: nothing stops it writing there, whenever it likes.
            if (g->scribble_)
                std::memset(const_cast<unsigned char*>(d) - p->offset, 0xEE, g->block_bytes_[p->handle]);
        };
        char err[256] = {};
        ndisshm_guest* g = nullptr;
    (void)ndisshm_guest_create(&c, &g, err, sizeof(err));
        if (g == nullptr) {
            ADD_FAILURE() << err;
            return;
        }
        NDIS_STATUS s = ndisshm_guest_connect(g, socket.c_str(), 5000, err, sizeof(err));
        while (!stop_ && s >= 0) {
            ndisshm_guest_stats st{};
            ndisshm_guest_get_stats(g, &st);
            attached = st.queues == 1 && st.blocks == 3;  // 2 receive blocks and the rings
            s = ndisshm_guest_poll(g, 20, err, sizeof(err));
        }
        end = s;
        ndisshm_guest_destroy(g);
    }
    bool scribble_;
    std::string name_;
    std::map<uint64_t, uint32_t> block_bytes_;  // this thread's alone
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

constexpr uid_t kNobody = 65534;

TEST(SecurityBoundarySocketDirectory, AnotherUserCannotConnect) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to become another user";
    test::TempDir tmp;
    // Anyone may pass through the parent, so only what listen_at made (run/ 0700, the socket 0600) stands in
    // the way.
    ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
    const std::string path = tmp.path() + "/run/host.sock";
    auto listener = ipc::listen_at(path);
    ASSERT_TRUE(listener) << listener.error().message();
    // The directory is 0700 and the socket 0600: for another user, connect is refused by the kernel.
    const pid_t pid = ::fork();  // no thread runs in this test: fork is safe
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(2);
        auto c = ipc::connect_to(path);
        ::_exit(!c && c.error().err == EACCES ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "another user could connect (1) or the test could not switch users (2)";
    // The owner can.
    EXPECT_TRUE(ipc::connect_to(path));
}

TEST(SecurityBoundarySocketDirectory, ADirectoryOwnedBySomeoneElseIsRefused) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to give a directory away";
    test::TempDir tmp;
    const std::string dir = tmp.path() + "/theirs";
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    ASSERT_EQ(::chown(dir.c_str(), kNobody, kNobody), 0);
    auto listener = ipc::listen_at(dir + "/host.sock");
    ASSERT_FALSE(listener);
    EXPECT_NE(listener.error().message().find("owned by uid 65534"), std::string::npos)
        << listener.error().message();
    EXPECT_FALSE(std::filesystem::exists(dir + "/host.sock"));
}

TEST(SecurityBoundarySocketDirectory, ASymlinkInPlaceOfTheDirectoryIsRefused) {
    test::TempDir tmp;
    const std::string target = tmp.path() + "/elsewhere", link = tmp.path() + "/run";
    ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
    ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
    auto listener = ipc::listen_at(link + "/host.sock");
    ASSERT_FALSE(listener);
    EXPECT_EQ(listener.error().err, ENOTDIR) << listener.error().message();
    EXPECT_FALSE(std::filesystem::exists(target + "/host.sock"));
    struct stat st {};
    ASSERT_EQ(::stat(target.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u) << "the link's target was chmodded";
}

uint32_t queue_of(ndisshm_hub* hub, const char* name) {
    std::vector<ndisshm_hub_guest_info> g(8);
    const size_t n = std::min(g.size(), ndisshm_hub_list_guests(hub, g.data(), g.size()));
    for (size_t i = 0; i < n; ++i)
        if (std::strcmp(g[i].name, name) == 0) return g[i].queue_id;
    return 0;
}

TEST_F(SecurityBoundaryHub, ControlSocketAnswersStatAndRefusesEveryOtherRequest) {
    char err[256] = {};
    char* reply = nullptr;
    ASSERT_EQ(ndisshm_control_query(socket_.c_str(), "stat", 2000, &reply, err, sizeof(err)), NDIS_STATUS_SUCCESS)
        << err;
    ASSERT_NE(reply, nullptr);
    EXPECT_NE(std::strstr(reply, "\"version\""), nullptr);
    ndisshm_control_free(reply);
    for (const char* request : {"shutdown", "stat2", "STAT", "stat\nshutdown", "free 1"}) {
        SCOPED_TRACE(std::string("request '") + request + "'");
        std::memset(err, 0, sizeof(err));
        EXPECT_EQ(ndisshm_control_query(socket_.c_str(), request, 2000, &reply, err, sizeof(err)),
                  NDIS_STATUS_NOT_SUPPORTED);
        EXPECT_EQ(reply, nullptr) << reply;
        ndisshm_control_free(reply);
        EXPECT_NE(std::strstr(err, "unknown request"), nullptr) << err;
    }
    // Nothing changed: the hub still serves and its books still read.
    ASSERT_EQ(ndisshm_control_query(socket_.c_str(), "stat", 2000, &reply, err, sizeof(err)), NDIS_STATUS_SUCCESS)
        << err;
    ndisshm_control_free(reply);
}

TEST_F(SecurityBoundaryHub, HandshakeFloodIsBoundedAndTimedOutSoAnHonestGuestGetsIn) {
    // 50 connections that never say HELLO, all kept open on our side.
    std::vector<os::UniqueFd> flood;
    for (int i = 0; i < 50; ++i) {
        auto fd = os::connect_unix(socket_);
        ASSERT_TRUE(fd.ok()) << fd.error().message();
        flood.push_back(std::move(*fd));
    }
    // The hub holds at most max_guests + kPendingAllowed of them as sessions; it closes the rest at once.
    ASSERT_TRUE(eventually(
        [&] {
            uint64_t closed_by_hub = 0;
            for (auto& fd : flood) {
                auto r = os::wait_readable(fd.get(), 0);
                closed_by_hub += r.ok() && *r ? 1 : 0;
            }
            return closed_by_hub >= flood.size() - (kMaxGuests + kPendingAllowed);
        },
        kHandshakeMs / 2))
        << "the hub keeps more half-open connections than it may";
    EXPECT_LE(stats().accepted, kMaxGuests + kPendingAllowed);
    // Each one it kept is dropped at its handshake deadline.
    ASSERT_TRUE(eventually([&] { return stats().closed == stats().accepted; }, 10 * kHandshakeMs))
        << "accepted " << stats().accepted << ", closed " << stats().closed;
    EXPECT_EQ(stats().refused, stats().accepted) << "a dropped handshake counts as refused";
    // The flood is still open on our side; an honest guest connects and gets its queue.
    ThreadGuest honest(socket_, false);
    ASSERT_TRUE(eventually([&] { return honest.attached.load(); }))
        << "an honest guest kept out after the flood";
    EXPECT_EQ(stats().running, 1u);
}

TEST_F(SecurityBoundaryHub, AGuestWritingOverItsBuffersHarmsOnlyItsOwnPackets) {
    ThreadGuest scribbler(socket_, true);
    ThreadGuest honest(socket_, false);
    ASSERT_TRUE(eventually([&] {
        return scribbler.attached.load() && honest.attached.load() && queue_of(hub_, "scribbler") != 0 &&
               queue_of(hub_, "honest") != 0;
    }));
    const uint32_t queues[] = {queue_of(hub_, "scribbler"), queue_of(hub_, "honest")};
    std::vector<unsigned char> packet(512, 0x5A);
    constexpr uint64_t kEach = 2000;
    uint64_t delivered[2] = {0, 0};
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while ((delivered[0] < kEach || delivered[1] < kEach) && std::chrono::steady_clock::now() < deadline) {
        for (int i = 0; i < 2; ++i) {
            if (delivered[i] == kEach) continue;
            const auto d =
                ndisshm_hub_deliver(hub_, queues[i], packet.data(), static_cast<uint32_t>(packet.size()));
            ASSERT_NE(d, NDISSHM_HUB_NO_GUEST) << "guest " << i << "'s session ended";
            if (d == NDISSHM_HUB_DELIVERED)
                ++delivered[i];
            else
                std::this_thread::sleep_for(100us);
        }
    }
    ASSERT_EQ(delivered[0], kEach);
    ASSERT_EQ(delivered[1], kEach);
    ASSERT_TRUE(
        eventually([&] { return scribbler.packets.load() == kEach && honest.packets.load() == kEach; }));
    // The host reads nothing back from guest memory: every slot came back and
    // was reused, the books are whole and both sessions still run.
    EXPECT_TRUE(eventually([&] { return stats().returned == 2 * kEach; })) << "returned " << stats().returned;
    const ndisshm_hub_stats s = stats();
    EXPECT_EQ(s.running, 2u);
    EXPECT_EQ(s.refused, 0u);
    std::vector<ndisshm_hub_queue_info> q(8);
    const size_t n = std::min(q.size(), ndisshm_hub_list_queues(hub_, q.data(), q.size()));
    int found = 0;
    for (size_t i = 0; i < n; ++i) {
        if (q[i].queue_id != queues[0] && q[i].queue_id != queues[1]) continue;
        ++found;
        EXPECT_EQ(q[i].books.blocks, 3u) << "2 receive blocks and the rings";
        EXPECT_EQ(q[i].received, kEach);
        EXPECT_EQ(q[i].outstanding, 0u);
    }
    EXPECT_EQ(found, 2);
    // The guest beside it read every packet whole. (The scribbler's own packets
    // may have met its garbage: that harm is its own.)
    EXPECT_EQ(honest.intact.load(), kEach);
}

TEST_F(SecurityBoundaryHub, AGuestsNameReachesListsAndLogsAsPrintableAsciiOnly) {
    // A name meant to forge log lines or drive a terminal: a newline and an escape sequence.
    const std::string evil = "vm\nndisshm hub: \x1b[2J";
    {
        ThreadGuest g(socket_, false, evil);
        ASSERT_TRUE(eventually([&] { return g.attached.load(); }));
        ndisshm_hub_guest_info info{};
        ASSERT_EQ(ndisshm_hub_list_guests(hub_, &info, 1), 1u);
        EXPECT_STREQ(info.name, "vm?ndisshm hub: ?[2J");
    }
    ASSERT_TRUE(eventually([&] { return stats().closed == 1; }));
    bool named = false;
    for (const auto& line : log()) {
        named = named || line.find("vm?ndisshm hub: ?[2J") != std::string::npos;
        for (unsigned char c : line)
            EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "a control byte in the log: " << line;
    }
    EXPECT_TRUE(named) << "the hub's log never named the guest";
}

}  // namespace
}  // namespace ndisshm::test
