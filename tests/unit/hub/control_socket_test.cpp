// The control socket (src/hub/control.hpp): its path next to the guest
// socket, a reply of several datagrams arriving whole, refusals, a client
// that never sends its request, a server that never answers, the socket's
// mode.
#include "hub/control.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "common/ipc_support.hpp"

namespace ndisshm::test {
namespace {

using test::TempDir;
using Clock = std::chrono::steady_clock;

std::unique_ptr<ipc::ControlServer> serve(const std::string& path, ipc::ControlHandler handler) {
    auto s = ipc::ControlServer::start(path, std::move(handler), {});
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
    return s.ok() ? std::move(*s) : nullptr;
}

TEST(ControlSocket, PathSitsNextToTheGuestSocket) {
    EXPECT_EQ(ipc::control_path_for("/run/ndisshm/host.sock"), "/run/ndisshm/host.ctl");
    EXPECT_EQ(ipc::control_path_for("/tmp/x/guests"), "/tmp/x/guests.ctl");
    EXPECT_EQ(ipc::control_path_for("a.sock.sock"), "a.sock.ctl");
}

TEST(ControlSocket, AReplyOfManyDatagramsArrivesWholeAndTheSocketIsPrivate) {
    TempDir dir;
    const std::string path = dir.path() + "/run/h.ctl";
    // Larger than several chunks and than a default socket buffer.
    std::string big;
    for (int i = 0; big.size() < 5 * ipc::kReplyChunkBytes + 123; ++i) big += std::to_string(i) + ",";
    auto server = serve(path, [&](std::string_view request, bool& ok) {
        ok = request == "stat";
        return ok ? big : std::string(R"({"error": "no"})");
    });
    ASSERT_NE(server, nullptr);
    namespace fs = std::filesystem;
    EXPECT_EQ(fs::status(path).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
    // By the guest socket's name or the control socket's own.
    for (const std::string& via : {dir.path() + "/run/h.sock", path}) {
        auto reply = ipc::control_query(via, "stat", 5000);
        ASSERT_TRUE(reply.ok()) << reply.error().message();
        EXPECT_EQ(*reply, big);
    }
    auto refused = ipc::control_query(path, "flush", 5000);
    ASSERT_TRUE(refused.ok());
    EXPECT_EQ(*refused, R"({"error": "no"})");
    EXPECT_EQ(server->requests(), 3u);
    server->stop();
    EXPECT_FALSE(fs::exists(path)) << "socket file left behind";
}

TEST(ControlSocket, AClientThatSaysNothingCostsTheServerOneTimeoutAtMost) {
    TempDir dir;
    const std::string path = dir.path() + "/h.ctl";
    auto server = serve(path, [](std::string_view, bool&) { return std::string("{}"); });
    ASSERT_NE(server, nullptr);
    auto silent = os::connect_unix(path);
    ASSERT_TRUE(silent.ok());
    const auto start = Clock::now();
    auto reply = ipc::control_query(path, "stat", 5000);
    ASSERT_TRUE(reply.ok()) << reply.error().message();
    EXPECT_EQ(*reply, "{}");
    EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(ipc::kControlClientTimeoutMs + 2000));
}

TEST(ControlSocket, NoHostAndASilentHostAreErrorsNamingThePath) {
    TempDir dir;
    auto none = ipc::control_query(dir.path() + "/none.sock", "stat", 500);
    ASSERT_FALSE(none.ok());
    EXPECT_NE(none.error().message().find(dir.path() + "/none.ctl"), std::string::npos) << none.error().message();
    // Listening, never accepting: the request is queued, no answer comes.
    auto mute = os::listen_unix(dir.path() + "/mute.ctl", 4);
    ASSERT_TRUE(mute.ok());
    auto timed_out = ipc::control_query(dir.path() + "/mute.ctl", "stat", 200);
    ASSERT_FALSE(timed_out.ok());
    EXPECT_EQ(timed_out.error().err, ETIMEDOUT);
    auto too_long = ipc::control_query(dir.path() + "/mute.ctl", std::string(ipc::kMaxRequestBytes + 1, 'x'), 200);
    ASSERT_FALSE(too_long.ok());
    EXPECT_EQ(too_long.error().err, EINVAL);
}

}  // namespace
}  // namespace ndisshm::test
