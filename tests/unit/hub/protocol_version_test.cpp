// A peer of another protocol version, against a real hub: it is refused at
// its first message with an ERROR that names both versions (and the hub's
// log says the same), before anything of it is used; the hub runs on.
#include <gtest/gtest.h>
#include <ndisshm/hub.h>
#include <ndisshm/host.h>

#include <cstring>
#include <string>

#include "common/ipc_support.hpp"
#include "ipc/channel.hpp"

namespace ndisshm::test {
namespace {

TEST(ProtocolVersion, AnOlderPeerGetsAnErrorNamingBothVersions) {
    TempDir dir;
    const std::string socket = dir.path() + "/host.sock";
    ndisshm_runtime* rt = nullptr;
    ASSERT_EQ(ndisshm_runtime_create(nullptr, &rt, nullptr, 0), NDIS_STATUS_SUCCESS);
    ndisshm_hub_config c;
    ndisshm_hub_config_init(&c);
    c.socket_path = socket.c_str();
    c.serve_control = 0;
    c.log = [](void*, const char*) {};
    ndisshm_hub* hub = nullptr;
    char err[256] = {};
    ASSERT_EQ(ndisshm_hub_create(rt, &c, &hub, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;
    ASSERT_EQ(ndisshm_hub_start(hub, err, sizeof(err)), NDIS_STATUS_SUCCESS) << err;

    auto s = ipc::connect_to(socket);
    ASSERT_TRUE(s) << s.error().message();
    // A version-2 guest's HELLO: the same header and payload, the old version.
    ipc::Hello hello{};
    std::strcpy(hello.name, "old");
    send_raw(s->get(), datagram(static_cast<uint16_t>(ipc::MessageType::Hello), &hello, sizeof(hello),
                                sizeof(hello), ipc::kMagic, 2));
    ipc::Channel ch(std::move(*s));
    auto m = ch.receive(5000);
    ASSERT_TRUE(m) << m.error().message();
    ASSERT_EQ(m->type(), ipc::MessageType::Error);
    const auto e = m->as<ipc::ErrorMessage>();
    EXPECT_EQ(e.code, static_cast<uint32_t>(NDIS_STATUS_INVALID_PARAMETER));
    EXPECT_NE(m->error_reason().find("unsupported protocol version 2 (expected 5)"), std::string::npos)
        << m->error_reason();
    auto end = ch.receive(5000);
    ASSERT_FALSE(end);
    EXPECT_EQ(end.error().err, ECONNRESET) << "then the hub closes";

    ndisshm_hub_stats st{};
    ndisshm_hub_get_stats(hub, &st);
    EXPECT_EQ(st.refused, 1u);
    EXPECT_EQ(st.running, 0u);
    ndisshm_hub_destroy(hub);
    ndisshm_runtime_destroy(rt);
}

}  // namespace
}  // namespace ndisshm::test
