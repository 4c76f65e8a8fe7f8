// Tensor: a contiguous, typed, shaped view of memory on one device.
//
// Contract: a Tensor shares ownership of its Storage (freed through the Allocator that made it,
// or never, for wrapped external memory). All tensors are dense row-major; views (reshape,
// row ranges, flat ranges) alias the same storage. Element access is checked against dtype.
// Tensors never allocate by themselves: a Backend (or an Allocator) hands them out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/bf16.h"
#include "runtime/core/error.h"

namespace tandem {

enum class DType : uint8_t { F32, I32, U16, BF16 };  // BF16: runtime/core/bf16.h
enum class DeviceKind : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(DeviceKind d);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::U16; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);

class Allocator;

// Owned (or borrowed) bytes on one device.
struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceKind device = DeviceKind::CPU;
  Allocator* allocator = nullptr;  // null: borrowed memory, never freed here
  Storage(void* p, size_t n, DeviceKind d, Allocator* a) : ptr(p), bytes(n), device(d), allocator(a) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();
};

class Tensor {
 public:
  Tensor() = default;
  // A fresh tensor from `alloc` (contents uninitialised).
  static Tensor allocate(Allocator& alloc, DeviceKind dev, Shape shape, DType dtype);
  // A non-owning tensor over external memory (caller keeps it alive).
  static Tensor wrap(void* ptr, DeviceKind dev, Shape shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative counts from the end
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  DeviceKind device() const { return storage_ ? storage_->device : DeviceKind::CPU; }
  bool is_cpu() const { return device() == DeviceKind::CPU; }

  void* raw() const { return static_cast<char*>(storage_->ptr) + offset_bytes_; }
  template <class T> T* data() const {
    TANDEM_CHECK(defined(), "data() on an undefined tensor");
    TANDEM_CHECK(dtype_ == dtype_of<T>(), "tensor is {}, accessed as {}", dtype_name(dtype_),
                 dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw());
  }
  float* f32() const { return data<float>(); }
  int32_t* i32() const { return data<int32_t>(); }

  // Same elements, new shape (numel must match).
  Tensor view(Shape shape) const;
  // Rows [begin, end) of dim 0.
  Tensor rows(int64_t begin, int64_t end) const;
  // `shape` worth of elements starting at flat element `offset`.
  Tensor flat_range(int64_t offset, Shape shape) const;

  std::string describe() const;  // "f32[4, 64] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_bytes_ = 0;
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::F32;
};

// True when the two tensors' bytes intersect (views of one storage, or in-place arguments).
bool tensors_overlap(const Tensor& a, const Tensor& b);

// Precondition helper: throws with both shapes when they differ.
void check_shape(const Tensor& t, const Shape& expected, const char* what);

}  // namespace tandem
