// Queue teardown while packets flow: the AF_XDP socket must be closed before
// the UMEM's block is freed, or the kernel goes on writing packets into
// memory the provider has taken back. A provider of the test's own poisons
// each block as it is freed and never reuses it, so any later write shows.
// The control test first proves the check can see such a write.
#include <sys/mman.h>

#include <cstring>
#include <map>

#include "afxdp_fixture.hpp"
#include "nic/afxdp_miniport.hpp"
#include "os/xdp_socket.hpp"

namespace ndisshm_afxdp {
namespace {

using ndisshm::nic::AfxdpMiniport;
using ndisshm::nic::AfxdpPacket;
using ndisshm::nic::AfxdpQueueConfig;

constexpr std::byte kPoison{0xA5};
constexpr NDIS_RECEIVE_QUEUE_ID kQueue = 1;

// Hands out page-aligned ranges of one shared mapping, never twice; free
// fills the range with kPoison (and remembers it), as a provider that
// zeroes or reuses memory would overwrite it.
class PoisoningProvider {
public:
    static constexpr size_t kBytes = 32u << 20;
    PoisoningProvider() {
        base_ = static_cast<std::byte*>(
            ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    }
    ~PoisoningProvider() { ::munmap(base_, kBytes); }
    bool ok() const { return base_ != MAP_FAILED; }

    ndisshm_provider_ops ops() {
        ndisshm_provider_ops o{};
        o.struct_size = sizeof(o);
        o.context = this;
        o.allocate = &allocate;
        o.free = &free;
        return o;
    }
    // Bytes of freed ranges that are no longer kPoison: written after free.
    size_t written_after_free() {
        std::lock_guard lock(mu_);
        size_t n = 0;
        for (const auto& [offset, length] : freed_)
            for (size_t i = 0; i < length; ++i) n += base_[offset + i] != kPoison ? 1 : 0;
        return n;
    }
    size_t freed_blocks() {
        std::lock_guard lock(mu_);
        return freed_.size();
    }

private:
    static NDIS_STATUS allocate(NDIS_HANDLE ctx, PNDIS_SHARED_MEMORY_PARAMETERS p,
                                PNDIS_HANDLE provider_context) {
        auto* self = static_cast<PoisoningProvider*>(ctx);
        std::lock_guard lock(self->mu_);
        const size_t length = (p->Length + 4095u) & ~size_t{4095};
        if (self->next_ + length > kBytes) return NDIS_STATUS_RESOURCES;
        const size_t offset = self->next_;
        self->next_ += length;
        p->VirtualAddress = self->base_ + offset;
        p->SGListBuffer->NumberOfElements = 1;
        p->SGListBuffer->Elements[0].Address.QuadPart =
            static_cast<LONGLONG>(reinterpret_cast<uintptr_t>(p->VirtualAddress));
        p->SGListBuffer->Elements[0].Length = p->Length;
        self->live_.emplace(offset, length);
        *provider_context = reinterpret_cast<NDIS_HANDLE>(offset + 1);  // non-NULL
        return NDIS_STATUS_SUCCESS;
    }
    static void free(NDIS_HANDLE ctx, NDIS_HANDLE provider_context) {
        auto* self = static_cast<PoisoningProvider*>(ctx);
        std::lock_guard lock(self->mu_);
        const size_t offset = reinterpret_cast<uintptr_t>(provider_context) - 1;
        const size_t length = self->live_.at(offset);
        self->live_.erase(offset);
        std::memset(self->base_ + offset, static_cast<int>(kPoison), length);
        self->freed_.emplace(offset, length);
    }

    std::byte* base_ = nullptr;
    std::mutex mu_;
    size_t next_ = 0;
    std::map<size_t, size_t> live_, freed_;  // offset -> length
};

class TeardownTest : public NetTest {
protected:
    void SetUp() override {
        NetTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        ASSERT_TRUE(provider_.ok());
        ASSERT_EQ(ndisshm_adapter_create(rt_, "xdp0", &adapter_), NDIS_STATUS_SUCCESS);
        ASSERT_EQ(ndisshm_binding_create(adapter_, "poison", &binding_), NDIS_STATUS_SUCCESS);
        const ndisshm_provider_ops ops = provider_.ops();
        ASSERT_EQ(ndisshm_binding_register_provider(binding_, &ops), NDIS_STATUS_SUCCESS);
        // The binding allocates the queue: its (poisoning) provider serves it.
        ASSERT_EQ(ndisshm_queue_create(binding_, kQueue), NDIS_STATUS_SUCCESS);
        make_links(1);
        auto tx = ndisshm::os::UdpSender::open(links_->tx(0).netns, links_->rx(0).address, kPort);
        ASSERT_TRUE(tx.ok()) << tx.error().message();
        tx_ = std::move(*tx);
    }
    void before_teardown() override {
        stop_flood();
        miniport_.reset();
        if (binding_ != nullptr) ndisshm_binding_destroy(binding_);
        if (adapter_ != nullptr) ndisshm_adapter_destroy(adapter_);
    }
    void start_flood() {
        flooder_ = std::thread([this] { flooded_ = flood(*tx_, stop_); });
    }
    void stop_flood() {
        stop_ = true;
        if (flooder_.joinable()) flooder_.join();
    }

    PoisoningProvider provider_;
    NDIS_HANDLE adapter_ = nullptr, binding_ = nullptr;
    std::unique_ptr<ndisshm::os::UdpSender> tx_;
    std::unique_ptr<AfxdpMiniport> miniport_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> flooded_{0};
    std::thread flooder_;
};

TEST_F(TeardownTest, StoppingAQueueWhileASenderFloodsWritesNothingIntoTheFreedBlock) {
    std::atomic<uint64_t> seen{0};
    miniport_ = std::make_unique<AfxdpMiniport>(
        adapter_, [&](NDIS_RECEIVE_QUEUE_ID q, std::span<const AfxdpPacket> ps) {
            for (const auto& p : ps) miniport_->give_back(q, p.handle, p.offset, p.length, p.cookie);
            seen += ps.size();
        });
    AfxdpQueueConfig c;
    c.ifname = links_->rx(0).ifname;
    c.netns = links_->rx(0).netns;
    c.frames = 256;
    std::string why;
    ASSERT_EQ(miniport_->start_queue(kQueue, c, &why), NDIS_STATUS_SUCCESS) << why;
    start_flood();
    // Packets flowing, every frame back on the fill ring: the kernel has
    // somewhere to write at every moment, right up to the stop.
    ASSERT_TRUE(eventually([&] { return seen.load() > 2000; }))
        << "only " << seen.load() << " packets arrived";
    miniport_->stop_queue(kQueue);
    ASSERT_EQ(provider_.freed_blocks(), 1u);
    const uint64_t at_stop = flooded_.load();
    std::this_thread::sleep_for(
        300ms);  // the flood goes on into the freed block, if anything still points there
    stop_flood();
    EXPECT_GT(flooded_.load(), at_stop);
    EXPECT_EQ(provider_.written_after_free(), 0u)
        << "the kernel wrote into the UMEM block after NDIS freed it";
    EXPECT_EQ(adapter_blocks(adapter_), 0u);
}

// The control: a socket left open over memory that was "freed" (poisoned)
// is written into by the kernel while the flood goes on, and the check above
// sees it. Without this the test above could pass for the wrong reason.
TEST_F(TeardownTest, ControlASocketLeftOpenOverFreedMemoryIsCaughtWritingIntoIt) {
    constexpr uint64_t kBytes = 64 * 4096;
    auto* area = static_cast<std::byte*>(
        ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(area, MAP_FAILED);
    ndisshm::os::XdpSocketConfig c;
    c.ifname = links_->rx(0).ifname;
    c.netns = links_->rx(0).netns;
    c.ring_size = 64;
    auto xsk = ndisshm::os::XdpSocket::open(area, kBytes, c);
    ASSERT_TRUE(xsk.ok()) << xsk.error().message();
    std::vector<uint64_t> frames;
    for (uint64_t f = 0; f < 64; ++f) frames.push_back(f * 4096);
    ASSERT_EQ((*xsk)->fill(frames), 64u);
    std::memset(area, static_cast<int>(kPoison), kBytes);  // "freed" while still registered
    start_flood();
    const bool written = eventually([&] {
        for (uint64_t i = 0; i < kBytes; ++i)
            if (area[i] != kPoison) return true;
        return false;
    });
    stop_flood();
    (*xsk)->close();
    ::munmap(area, kBytes);
    EXPECT_TRUE(written)
        << "the kernel never wrote into the registered range: the teardown test would prove nothing";
}

}  // namespace
}  // namespace ndisshm_afxdp
