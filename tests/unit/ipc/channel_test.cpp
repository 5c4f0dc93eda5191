// ipc::Channel: every message type makes the round trip intact, SET_MEMORY's
// memfd arrives usable, the peer's end is seen (even with data of ours unread
// in its queue), timeouts time out, and the listening socket is private.
// Malformed input: channel_malformed_test.cpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "common/ipc_support.hpp"
#include "ipc/ring.hpp"
#include "os/fd_checks.hpp"

namespace ndisshm::test {
using namespace ndisshm::ipc;  // the layer under test
namespace {

using test::fd_count;

struct Pair {
    Channel a{os::UniqueFd{}};
    Channel b{os::UniqueFd{}};
};

Pair make_pair() {
    auto p = os::seqpacket_pair();
    EXPECT_TRUE(p) << p.error().message();
    return Pair{Channel(std::move(p->first)), Channel(std::move(p->second))};
}

template <class T>
void expect_round_trip(Channel& from, Channel& to, MessageType type, const T& sent, uint32_t sequence) {
    SCOPED_TRACE(static_cast<int>(type));
    ASSERT_TRUE(from.send(type, sent));
    auto m = to.receive(1000);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->header.magic, kMagic);
    EXPECT_EQ(m->header.version, kVersion);
    EXPECT_EQ(m->type(), type);
    EXPECT_EQ(m->header.length, sizeof(T));
    EXPECT_EQ(m->header.sequence, sequence);
    EXPECT_FALSE(m->fd.valid());
    const T got = m->as<T>();
    EXPECT_EQ(std::memcmp(&got, &sent, sizeof(T)), 0);
}

TEST(Channel, EveryFixedSizeTypeMakesTheRoundTrip) {
    Pair p = make_pair();
    Hello hello{};
    std::strcpy(hello.name, "vm-one");
    uint32_t seq = 0;
    expect_round_trip(p.a, p.b, MessageType::Hello, hello, ++seq);
    expect_round_trip(p.a, p.b, MessageType::HelloAck, HelloAck{42, 0}, ++seq);
    expect_round_trip(p.a, p.b, MessageType::MemoryAck, MemoryAck{1ull << 30}, ++seq);
    expect_round_trip(p.a, p.b, MessageType::QueueAttached, QueueAttached{3, kQueueLookaheadSplit, 128, 0}, ++seq);
    expect_round_trip(p.a, p.b, MessageType::QueueDetached, QueueDetached{3, 0}, ++seq);
    expect_round_trip(p.a, p.b, MessageType::BlockAdded, BlockAdded{0xABCDEF, 1 << 20, 65536, 3, 2, 0}, ++seq);
    expect_round_trip(p.a, p.b, MessageType::BlockRemoved, BlockRemoved{0xABCDEF}, ++seq);
    expect_round_trip(p.a, p.b, MessageType::Bye, Bye{}, ++seq);
    expect_round_trip(p.a, p.b, MessageType::Error, ErrorMessage{0xC000009Au, 0}, ++seq);  // no reason
    // The other direction keeps its own count.
    expect_round_trip(p.b, p.a, MessageType::Bye, Bye{}, 1);
}

TEST(Channel, RingsAttachedCarriesTwoEventfds) {
    Pair p = make_pair();
    const size_t before = fd_count();
    {
        auto rx = os::WakeFd::create();
        auto done = os::WakeFd::create();
        ASSERT_TRUE(rx && done);
        const int fds[] = {rx->fd(), done->fd()};
        const RingsAttached ra{4, 512, 0x5160, RingGeometry::for_size(512).done_offset, 0};
        ASSERT_TRUE(p.a.send(MessageType::RingsAttached, ra, fds));
        auto m = p.b.receive(1000);
        ASSERT_TRUE(m) << m.error().message();
        EXPECT_EQ(m->as<RingsAttached>().size, 512u);
        ASSERT_TRUE(m->fd.valid());
        ASSERT_TRUE(m->fd2.valid());
        // The same eventfds: a kick through the received one reaches ours.
        auto theirs = os::WakeFd::adopt(std::move(m->fd));
        ASSERT_TRUE(theirs);
        theirs->signal();
        auto ready = os::wait_readable(rx->fd(), 1000);
        ASSERT_TRUE(ready);
        EXPECT_TRUE(*ready);
    }
    EXPECT_EQ(fd_count(), before) << "every fd closed with its owner";
}

TEST(Channel, SetMemoryCarriesAUsableMemfd) {
    Pair p = make_pair();
    const size_t before = fd_count();
    {
        os::UniqueFd memfd = test::sealed_memfd(1 << 16);
        auto mine = os::map_shared(memfd.get(), 1 << 16);
        ASSERT_TRUE(mine);
        std::memcpy(*mine, "in place", 9);
        ASSERT_TRUE(p.a.send(MessageType::SetMemory, SetMemory{1 << 16, 0x80000000}, memfd.get()));
        auto m = p.b.receive(1000);
        ASSERT_TRUE(m) << m.error().message();
        ASSERT_TRUE(m->fd.valid());
        EXPECT_NE(m->fd.get(), memfd.get());
        EXPECT_EQ(m->as<SetMemory>().guest_physical_base, 0x80000000u);
        auto size = os::file_size(m->fd.get());
        ASSERT_TRUE(size);
        EXPECT_EQ(*size, 1u << 16);
        auto seals = os::memfd_seals(m->fd.get());
        ASSERT_TRUE(seals) << seals.error().message();
        EXPECT_NE(*seals & os::kSealShrink, 0u);
        auto theirs = os::map_shared(m->fd.get(), 1 << 16);
        ASSERT_TRUE(theirs);
        EXPECT_STREQ(static_cast<const char*>(*theirs), "in place") << "the same pages, not a copy";
        EXPECT_NE(::fcntl(m->fd.get(), F_GETFD) & FD_CLOEXEC, 0) << "received fds are close-on-exec";
        os::unmap(*mine, 1 << 16);
        os::unmap(*theirs, 1 << 16);
    }
    EXPECT_EQ(fd_count(), before);
}

TEST(Channel, MemfdSealsTellAMemfdFromOtherFds) {
    auto p = os::seqpacket_pair();
    ASSERT_TRUE(p);
    auto seals = os::memfd_seals(p->first.get());
    ASSERT_FALSE(seals);
    EXPECT_EQ(seals.error().err, EINVAL);
    EXPECT_NE(seals.error().message().find("not a memfd"), std::string::npos);
}

TEST(Channel, SendRefusesMalformedMessagesOfOurOwn) {
    Pair p = make_pair();
    const char three[3] = {};
    auto s = p.a.send(MessageType::Hello, three, 3);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().err, EINVAL);
    EXPECT_FALSE(p.a.send(MessageType::Bye, Bye{}, 0)) << "an fd on BYE";
    EXPECT_FALSE(p.a.send(MessageType::SetMemory, SetMemory{}, -1)) << "SET_MEMORY without its fd";
    EXPECT_FALSE(p.a.send(MessageType::RingsAttached, RingsAttached{}, 0)) << "RINGS_ATTACHED with one fd";
    EXPECT_FALSE(p.a.send(static_cast<MessageType>(9), Bye{})) << "retired PACKETS";
    // Nothing went out, and the first real message is #1.
    ASSERT_TRUE(p.a.send(MessageType::Bye, Bye{}));
    auto m = p.b.receive(1000);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->header.sequence, 1u);
}

TEST(Channel, ReceiveTimesOut) {
    Pair p = make_pair();
    auto m = p.b.receive(20);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().err, ETIMEDOUT);
    m = p.b.receive(0);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().err, ETIMEDOUT);
}

TEST(Channel, PeerClosingIsSeenAfterWhatItSent) {
    Pair p = make_pair();
    ASSERT_TRUE(p.a.send(MessageType::Bye, Bye{}));
    { Channel gone = std::move(p.a); }
    auto m = p.b.receive(1000);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), MessageType::Bye);
    m = p.b.receive(1000);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().err, ECONNRESET);
    EXPECT_EQ(m.error().detail, "peer closed");
}

TEST(Channel, PeerClosingWithOurMessagesUnreadStillDeliversItsLastWords) {
    // The kernel reports ECONNRESET first when the peer dies with our data
    // unread; its BYE or ERROR, queued before, must still reach us.
    Pair p = make_pair();
    ASSERT_TRUE(p.b.send(MessageType::Bye, Bye{}));  // never read by a
    ASSERT_TRUE(p.a.send_error(1, "going away"));
    { Channel gone = std::move(p.a); }
    auto m = p.b.receive(1000);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->error_reason(), "going away");
    m = p.b.receive(1000);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().err, ECONNRESET);
}

TEST(Channel, SendingToAGonePeerIsEpipeNotSigpipe) {
    Pair p = make_pair();
    { Channel gone = std::move(p.b); }
    auto s = p.a.send(MessageType::Bye, Bye{});
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().err, EPIPE);  // and we are still running
}

mode_t mode_of(const std::string& path) {
    struct stat st{};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
}

TEST(Channel, ListeningSocketIsPrivateAndAcceptsConnections) {
    test::TempDir tmp;
    const std::string dir = tmp.path() + "/run/ndisshm";
    const std::string path = dir + "/host.sock";
    auto listener = listen_at(path);
    ASSERT_TRUE(listener) << listener.error().message();
    EXPECT_EQ(mode_of(tmp.path() + "/run"), 0700u);
    EXPECT_EQ(mode_of(dir), 0700u);
    EXPECT_EQ(mode_of(path), 0600u);
    auto client = connect_to(path);
    ASSERT_TRUE(client) << client.error().message();
    auto server = accept_from(listener->get());
    ASSERT_TRUE(server) << server.error().message();
    Channel c(std::move(*client)), s(std::move(*server));
    ASSERT_TRUE(c.send(MessageType::Bye, Bye{}));
    auto m = s.receive(1000);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->type(), MessageType::Bye);
}

TEST(Channel, ExistingDirectoryIsMadePrivate) {
    test::TempDir tmp;
    ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
    auto listener = listen_at(tmp.path() + "/host.sock");
    ASSERT_TRUE(listener) << listener.error().message();
    EXPECT_EQ(mode_of(tmp.path()), 0700u);
}

TEST(Channel, StaleSocketIsReplacedLiveOneAndOtherFilesAreNot) {
    test::TempDir tmp;
    const std::string path = tmp.path() + "/host.sock";
    { auto first = listen_at(path); ASSERT_TRUE(first); }  // a host that died: its file stays
    auto second = listen_at(path);
    ASSERT_TRUE(second) << second.error().message();
    auto third = listen_at(path);
    ASSERT_FALSE(third);
    EXPECT_EQ(third.error().err, EADDRINUSE);
    const std::string file = tmp.path() + "/notes.txt";
    std::ofstream(file) << "keep me";
    auto over_file = listen_at(file);
    ASSERT_FALSE(over_file);
    EXPECT_EQ(over_file.error().err, EEXIST);
    std::string kept;
    std::getline(std::ifstream(file), kept);
    EXPECT_EQ(kept, "keep me");
}

TEST(Channel, SocketPathsTooLongOrMissingAreRefused) {
    auto l = listen_at("/tmp/" + std::string(200, 'x'));
    ASSERT_FALSE(l);
    EXPECT_EQ(l.error().err, ENAMETOOLONG);
    auto c = connect_to("/nonexistent-ndisshm-dir/host.sock");
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().err, ENOENT);
    EXPECT_NE(c.error().message().find("connect(/nonexistent-ndisshm-dir/host.sock)"), std::string::npos);
}

TEST(Channel, DefaultSocketDirFollowsXdgRuntimeDir) {
    const char* saved = std::getenv("XDG_RUNTIME_DIR");
    const std::string restore = saved != nullptr ? saved : "";
    ::setenv("XDG_RUNTIME_DIR", "/run/user/1234", 1);
    EXPECT_EQ(default_socket_dir(), "/run/user/1234/ndisshm");
    ::unsetenv("XDG_RUNTIME_DIR");
    const std::string fallback = default_socket_dir();
    EXPECT_TRUE(fallback == "/run/ndisshm" || fallback.rfind("/tmp/ndisshm-", 0) == 0) << fallback;
    if (saved != nullptr) ::setenv("XDG_RUNTIME_DIR", restore.c_str(), 1);
}

// ERROR's reason is as long as the datagram says: one of 300 bytes (more
// than version 3's 120-byte field held) arrives whole, with its status.
TEST(Channel, ALongErrorReasonArrivesWhole) {
    Pair p = make_pair();
    std::string reason = "guest memory too small: ";
    while (reason.size() < 296) reason += "0123456789";
    reason = reason.substr(0, 296) + " END";
    ASSERT_EQ(reason.size(), 300u);
    ASSERT_TRUE(p.a.send_error(0xC000009Au, reason));
    auto m = p.b.receive(1000);
    ASSERT_TRUE(m) << m.error().message();
    ASSERT_EQ(m->type(), MessageType::Error);
    EXPECT_EQ(m->header.length, sizeof(ErrorMessage) + 300);
    EXPECT_EQ(m->as<ErrorMessage>().code, 0xC000009Au);
    EXPECT_EQ(m->error_reason(), reason);
}

// What the sender cuts, so that what it sends is always valid: a reason
// past kMaxReasonBytes to that many, one with a NUL to the bytes before it.
TEST(Channel, AnErrorReasonIsCutAtTheMaximumAndAtANul) {
    Pair p = make_pair();
    const std::string huge(kMaxReasonBytes + 500, 'r');
    ASSERT_TRUE(p.a.send_error(1, huge));
    ASSERT_TRUE(p.a.send_error(2, std::string("before\0after", 12)));
    auto m = p.b.receive(1000);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->error_reason(), huge.substr(0, kMaxReasonBytes));
    m = p.b.receive(1000);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->error_reason(), "before");
    EXPECT_EQ(m->as<ErrorMessage>().code, 2u);
}

}  // namespace
}  // namespace ndisshm::test
