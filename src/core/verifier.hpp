// The verifier: how misuse is reported, and counted.
//
// Windows' Driver Verifier stops the machine on misuse; we report instead and
// leave every book as it was, so a driver's test run shows all its bugs at
// once. Reports go to the runtime's callback (and stderr unless quiet);
// violations that belong to no runtime (a garbage NdisHandle, IRQL misuse)
// go to the process-wide verifier.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include <ndisshm/host.h>

namespace ndisshm::core {

const char* violation_kind_name(ndisshm_violation_kind kind);

struct ViolationSite {
    const char* file = nullptr;
    int line = 0;
};

class Verifier {
public:
    Verifier(bool enabled, bool to_stderr) : enabled_(enabled), to_stderr_(to_stderr) {}

    bool enabled() const { return enabled_; }
    void set_callback(ndisshm_violation_callback cb, void* context);

    // Counts it always; reports it (callback, stderr) when enabled.
    void report(ndisshm_violation_kind kind, const char* call, NDIS_HANDLE adapter, NDIS_HANDLE handle,
                ViolationSite site, const std::string& message);

    // Not a violation, but worth a line in the log when enabled: e.g. why the
    // OS refused memory (errno text), behind an NDIS_STATUS_RESOURCES.
    void log(const char* call, const std::string& message);

    uint64_t count(ndisshm_violation_kind kind) const;
    uint64_t total() const;

    static Verifier& global();

private:
    bool enabled_;
    bool to_stderr_;
    std::mutex cb_mu_;
    ndisshm_violation_callback cb_ = nullptr;
    void* cb_context_ = nullptr;
    std::array<std::atomic<uint64_t>, NDISSHM_VIOLATION_KIND_COUNT> counts_{};
};

}  // namespace ndisshm::core
