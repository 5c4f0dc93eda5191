#include "common/log.hpp"

#include <sys/stat.h>

#include <cinttypes>
#include <cstdlib>
#include <utility>

namespace ndisshm::cli {

bool is_journal_stream(std::FILE* stream) {
    const char* env = std::getenv("JOURNAL_STREAM");
    if (env == nullptr || *env == '\0') return false;
    uint64_t dev = 0, ino = 0;
    if (std::sscanf(env, "%" SCNu64 ":%" SCNu64, &dev, &ino) != 2) return false;
    struct stat st {};
    if (fstat(fileno(stream), &st) != 0) return false;
    return static_cast<uint64_t>(st.st_dev) == dev && static_cast<uint64_t>(st.st_ino) == ino;
}

Log::Log(std::string prefix, std::FILE* stream, bool quiet)
    : prefix_(std::move(prefix)), stream_(stream), quiet_(quiet), journal_(is_journal_stream(stream)) {}

void Log::operator()(LogLevel level, const std::string& line) const {
    if (quiet_ && level != LogLevel::Error) return;
    if (journal_)
        std::fprintf(stream_, "<%d>%s: %s\n", static_cast<int>(level), prefix_.c_str(), line.c_str());
    else
        std::fprintf(stream_, "%s: %s\n", prefix_.c_str(), line.c_str());
    std::fflush(stream_);
}

LogLevel hub_line_level(const std::string& line) {
    if (line.rfind("verifier:", 0) == 0) return LogLevel::Error;
    for (const char* word : {"refus", "fail", "dropping", "abandoned", "ndisshm_queue_free("})
        if (line.find(word) != std::string::npos) return LogLevel::Warning;
    return LogLevel::Info;
}

}  // namespace ndisshm::cli
