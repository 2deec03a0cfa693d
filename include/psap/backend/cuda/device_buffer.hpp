#pragma once
/// \file device_buffer.hpp
/// psap::cuda::device_buffer<T>: an owning, zero-initialised array in the
/// current CUDA device's memory (the CUDA backend's `buffer<T>`, used for
/// snapshots). Copies are device-to-device. Errors throw psap::error.
/// T: a trivially copyable type.

#include <psap/backend/cuda/launch.hpp>
#include <psap/backend/cuda/status.hpp>
#include <psap/error.hpp>

#include <cstddef>
#include <type_traits>
#include <utility>

namespace psap::cuda {

template <class T>
class device_buffer {
    static_assert(std::is_trivially_copyable_v<T>, "psap::cuda::device_buffer: T must be trivially copyable");

public:
    using value_type = T;

    device_buffer() noexcept = default;
    /// `size` zeroed elements.
    explicit device_buffer(std::size_t size) {
        void* p = nullptr;
        throw_if(allocate_zeroed(&p, size * sizeof(T), current_stream()), "allocation", size);
        data_ = static_cast<T*>(p);
        size_ = size;
    }
    device_buffer(const device_buffer& other) : device_buffer(other.size_) {
        throw_if(copy_device(data_, other.data_, bytes(), current_stream()), "copy", size_);
    }
    device_buffer(device_buffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    device_buffer& operator=(const device_buffer& other) {
        if (this != &other) {
            device_buffer copy(other);
            swap(copy);
        }
        return *this;
    }
    device_buffer& operator=(device_buffer&& other) noexcept {
        device_buffer moved(std::move(other));
        swap(moved);
        return *this;
    }
    ~device_buffer() { (void)deallocate(data_); }

    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    std::size_t bytes() const noexcept { return size_ * sizeof(T); }
    bool empty() const noexcept { return size_ == 0; }

    void swap(device_buffer& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
    }

private:
    static void throw_if(const status& s, const char* what, std::size_t n) {
        if (!s) psap::detail::fail("psap::cuda::device_buffer: ", what, " of ", n, " elements failed: ", s.message);
    }

    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace psap::cuda
