// Log lines a journal can filter by level. Under systemd (JOURNAL_STREAM
// names the stream a line goes to) each line starts with the kernel-style
// priority prefix sd-daemon(3) describes: "<6>" info, "<4>" warning, "<3>"
// error; anywhere else lines are plain.
#pragma once

#include <cstdio>
#include <string>

namespace ndisshm::cli {

enum class LogLevel { Error = 3, Warning = 4, Info = 6 };

// True when `stream` is the journal stream systemd connected: JOURNAL_STREAM
// ("DEVICE:INODE", systemd.exec(5)) names the same file as the stream's fd,
// so a redirected stderr of a service does not get prefixes meant for the
// journal.
bool is_journal_stream(std::FILE* stream);

// One command's log: "PREFIX: line" on `stream`, with the priority prefix
// when that stream is the journal. `quiet` drops info and warnings, never
// errors.
class Log {
public:
    Log(std::string prefix, std::FILE* stream, bool quiet);

    void operator()(LogLevel level, const std::string& line) const;
    void info(const std::string& line) const { (*this)(LogLevel::Info, line); }
    void warning(const std::string& line) const { (*this)(LogLevel::Warning, line); }
    void error(const std::string& line) const { (*this)(LogLevel::Error, line); }

private:
    std::string prefix_;
    std::FILE* stream_;
    bool quiet_;
    bool journal_;
};

// The level of one of the hub's log lines, which come without one: a
// verifier finding is an error; a refused or dropped connection, a failed
// call, an abandoned reply a warning; a guest coming or going is news.
LogLevel hub_line_level(const std::string& line);

}  // namespace ndisshm::cli
