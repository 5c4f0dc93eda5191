// Result<T>: a value or an Error, for the layers below the C surface.
//
// C++20 has no std::expected; this is the small part of it we use. An Error
// carries the operation that failed and, for OS failures, errno and its text,
// so that every message that reaches a user names both.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace ndisshm {
// `internal`: the public C++ API (<ndisshm/ndisshm.hpp>) has an
// ndisshm::Error of its own. Both have inline members, so a program that
// links the static library and uses that API (the CLI with the AF_XDP NIC,
// any static consumer) would get one type's destructor for the other's (one
// definition rule). The inline namespace keeps the spelling ndisshm::Error
// here and gives these symbols names of their own.
inline namespace internal {

struct Error {
    std::string operation;  // e.g. "memfd_create(ndisshm-default)"
    int err = 0;            // errno, or 0 for errors of ours
    std::string detail;     // strerror(err) or our own words

    std::string message() const { return operation + ": " + detail; }
};

template <class T>
class Result {
public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(Error e) : v_(std::move(e)) {}      // NOLINT(google-explicit-constructor)

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<0>(v_); }
    const T& value() const { return std::get<0>(v_); }
    T& operator*() { return value(); }
    T* operator->() { return &value(); }
    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

// For operations that return nothing on success.
struct Ok {};
using Status = Result<Ok>;

}  // namespace internal
}  // namespace ndisshm
