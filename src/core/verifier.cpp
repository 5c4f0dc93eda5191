#include "core/verifier.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ndisshm::core {

const char* violation_kind_name(ndisshm_violation_kind kind) {
    switch (kind) {
        case NDISSHM_VIOLATION_BAD_HANDLE: return "bad-handle";
        case NDISSHM_VIOLATION_BAD_PARAMETERS: return "bad-parameters";
        case NDISSHM_VIOLATION_BAD_LENGTH: return "bad-length";
        case NDISSHM_VIOLATION_SG_BUFFER_TOO_SHORT: return "sg-buffer-too-short";
        case NDISSHM_VIOLATION_DOUBLE_FREE: return "double-free";
        case NDISSHM_VIOLATION_WRONG_ADAPTER: return "wrong-adapter";
        case NDISSHM_VIOLATION_GARBAGE_HANDLE: return "garbage-handle";
        case NDISSHM_VIOLATION_IRQL: return "irql";
        case NDISSHM_VIOLATION_PROVIDER_NO_CONTEXT: return "provider-no-context";
        case NDISSHM_VIOLATION_PROVIDER_BAD_RESULT: return "provider-bad-result";
        case NDISSHM_VIOLATION_BAD_REGISTRATION: return "bad-registration";
        case NDISSHM_VIOLATION_LEAK: return "leak";
        case NDISSHM_VIOLATION_QUEUE_FREED_WITH_BLOCKS: return "queue-freed-with-blocks";
        case NDISSHM_VIOLATION_BINDING_DETACHED_WITH_BLOCKS: return "binding-detached-with-blocks";
        case NDISSHM_VIOLATION_LENIENT: return "lenient";
        case NDISSHM_VIOLATION_KIND_COUNT: break;
    }
    return "unknown";
}

void Verifier::set_callback(ndisshm_violation_callback cb, void* context) {
    std::lock_guard lock(cb_mu_);
    cb_ = cb;
    cb_context_ = context;
}

void Verifier::report(ndisshm_violation_kind kind, const char* call, NDIS_HANDLE adapter, NDIS_HANDLE handle,
                      ViolationSite site, const std::string& message) {
    if (kind > 0 && kind < NDISSHM_VIOLATION_KIND_COUNT) counts_[kind].fetch_add(1, std::memory_order_relaxed);
    if (!enabled_) return;
    if (to_stderr_) std::fprintf(stderr, "ndisshm verifier: %s: [%s] %s\n", call, violation_kind_name(kind), message.c_str());
    ndisshm_violation_callback cb;
    void* ctx;
    {
        std::lock_guard lock(cb_mu_);
        cb = cb_;
        ctx = cb_context_;
    }
    if (cb == nullptr) return;
    ndisshm_violation v{};
    v.kind = kind;
    v.kind_name = violation_kind_name(kind);
    v.call = call;
    v.message = message.c_str();
    v.adapter = adapter;
    v.handle = handle;
    v.alloc_file = site.file;
    v.alloc_line = site.line;
    cb(ctx, &v);
}

void Verifier::log(const char* call, const std::string& message) {
    if (enabled_ && to_stderr_) std::fprintf(stderr, "ndisshm: %s: %s\n", call, message.c_str());
}

uint64_t Verifier::count(ndisshm_violation_kind kind) const {
    if (kind <= 0 || kind >= NDISSHM_VIOLATION_KIND_COUNT) return 0;
    return counts_[kind].load(std::memory_order_relaxed);
}

uint64_t Verifier::total() const {
    uint64_t n = 0;
    for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
    return n;
}

Verifier& Verifier::global() {
    auto env_is = [](const char* name, const char* value) {
        const char* v = std::getenv(name);
        return v != nullptr && std::strcmp(v, value) == 0;
    };
    static Verifier v(/*enabled=*/!env_is("NDISSHM_VERIFIER", "0"), /*to_stderr=*/!env_is("NDISSHM_QUIET", "1"));
    return v;
}

}  // namespace ndisshm::core
