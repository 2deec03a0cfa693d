#pragma once
/// Dense NCHW float32 tensors for the reference trainer.

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace trainer {

/// 64-byte aligned allocator: lets the SIMD kernels use aligned loads on
/// channel planes and keeps rows from straddling cache lines.
template <class T>
struct aligned_allocator {
  using value_type = T;
  static constexpr std::size_t alignment = 64;
  aligned_allocator() = default;
  template <class U>
  aligned_allocator(const aligned_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    const std::size_t bytes = (n * sizeof(T) + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, bytes == 0 ? alignment : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }
  template <class U>
  bool operator==(const aligned_allocator<U>&) const noexcept { return true; }
};

using float_buffer = std::vector<float, aligned_allocator<float>>;

/// Shape of an NCHW tensor; a matrix [rows, cols] is stored as {rows, cols, 1, 1}.
struct shape4 {
  int n = 0, c = 0, h = 0, w = 0;
  std::size_t size() const {
    return static_cast<std::size_t>(n) * static_cast<std::size_t>(c) * static_cast<std::size_t>(h) *
           static_cast<std::size_t>(w);
  }
  std::size_t plane() const { return static_cast<std::size_t>(h) * static_cast<std::size_t>(w); }
  std::size_t sample() const { return static_cast<std::size_t>(c) * plane(); }
  friend bool operator==(const shape4&, const shape4&) = default;
};

/// Owning NCHW float32 tensor. resize() never shrinks the allocation, so the
/// activation buffers of a model are allocated on the first batch and reused.
class tensor {
 public:
  tensor() = default;
  explicit tensor(shape4 s) { resize(s); }

  void resize(shape4 s) {
    shape_ = s;
    if (data_.size() < s.size()) data_.resize(s.size());
  }
  const shape4& shape() const { return shape_; }
  std::size_t size() const { return shape_.size(); }

  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  /// Start of the plane (sample n, channel c).
  float* plane(int n, int c) { return data_.data() + offset(n, c); }
  const float* plane(int n, int c) const { return data_.data() + offset(n, c); }
  /// Start of sample n.
  float* sample(int n) { return data_.data() + static_cast<std::size_t>(n) * shape_.sample(); }
  const float* sample(int n) const { return data_.data() + static_cast<std::size_t>(n) * shape_.sample(); }

  void fill(float v) {
    for (std::size_t i = 0; i < size(); ++i) data_[i] = v;
  }

 private:
  std::size_t offset(int n, int c) const {
    return (static_cast<std::size_t>(n) * static_cast<std::size_t>(shape_.c) + static_cast<std::size_t>(c)) *
           shape_.plane();
  }
  shape4 shape_;
  float_buffer data_;
};

}  // namespace trainer
