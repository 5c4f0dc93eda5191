// A doubly linked list threaded through its elements, as NDIS links each
// shared memory block on its adapter's, binding's and queue's lists at once:
// O(1) insert and unlink, no allocation. Not thread-safe (the adapter lock).
#pragma once

#include <cstddef>

namespace ndisshm::core {

template <class T>
struct ListLink {
    T* prev = nullptr;
    T* next = nullptr;
};

template <class T, ListLink<T> T::*Link>
class IntrusiveList {
public:
    void push_back(T* item) {
        ListLink<T>& l = item->*Link;
        l.prev = tail_;
        l.next = nullptr;
        if (tail_ != nullptr) (tail_->*Link).next = item; else head_ = item;
        tail_ = item;
        ++size_;
    }
    void erase(T* item) {
        ListLink<T>& l = item->*Link;
        if (l.prev != nullptr) (l.prev->*Link).next = l.next; else head_ = l.next;
        if (l.next != nullptr) (l.next->*Link).prev = l.prev; else tail_ = l.prev;
        l.prev = l.next = nullptr;
        --size_;
    }
    T* front() const { return head_; }
    static T* next(const T* item) { return (item->*Link).next; }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

private:
    T* head_ = nullptr;
    T* tail_ = nullptr;
    size_t size_ = 0;
};

}  // namespace ndisshm::core
