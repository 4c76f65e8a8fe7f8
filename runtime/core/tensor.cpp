// Tensor views and storage release.
#include "runtime/core/tensor.h"

#include "runtime/core/allocator.h"

namespace tandem {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::I32: return 4;
    case DType::U16: return 2;
    case DType::BF16: return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::I32: return "i32";
    case DType::U16: return "u16";
    case DType::BF16: return "bf16";
  }
  return "?";
}

const char* device_name(DeviceKind d) { return d == DeviceKind::CPU ? "cpu" : "cuda"; }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    TANDEM_CHECK(d >= 0, "negative dimension {} in shape {}", d, shape_str(s));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Storage::~Storage() {
  if (allocator && ptr) allocator->deallocate(ptr, bytes);
}

Tensor Tensor::allocate(Allocator& alloc, DeviceKind dev, Shape shape, DType dtype) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  size_t bytes = static_cast<size_t>(t.numel_) * dtype_size(dtype);
  void* p = alloc.allocate(bytes);
  t.storage_ = std::make_shared<Storage>(p, bytes, dev, &alloc);
  return t;
}

Tensor Tensor::wrap(void* ptr, DeviceKind dev, Shape shape, DType dtype) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(ptr, t.nbytes(), dev, nullptr);
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  TANDEM_CHECK(j >= 0 && j < n, "dim({}) of a {}-d tensor {}", i, n, shape_str(shape_));
  return shape_[j];
}

Tensor Tensor::view(Shape shape) const {
  int64_t n = shape_numel(shape);
  TANDEM_CHECK(n == numel_, "view {} of {} changes the element count ({} vs {})", shape_str(shape),
               shape_str(shape_), n, numel_);
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  TANDEM_CHECK(ndim() >= 1, "rows() of a scalar tensor");
  TANDEM_CHECK(0 <= begin && begin <= end && end <= shape_[0], "rows [{}, {}) of {}", begin, end,
               shape_str(shape_));
  int64_t row = shape_[0] ? numel_ / shape_[0] : 0;
  Shape s = shape_;
  s[0] = end - begin;
  return flat_range(begin * row, s);
}

Tensor Tensor::flat_range(int64_t offset, Shape shape) const {
  int64_t n = shape_numel(shape);
  TANDEM_CHECK(offset >= 0 && offset + n <= numel_, "flat range [{}, {}) of {} elements", offset,
               offset + n, numel_);
  Tensor t = *this;
  t.offset_bytes_ += static_cast<size_t>(offset) * dtype_size(dtype_);
  t.shape_ = std::move(shape);
  t.numel_ = n;
  return t;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined";
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_str(shape_), device_name(device()));
}

bool tensors_overlap(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* pa = static_cast<const char*>(a.raw());
  const char* pb = static_cast<const char*>(b.raw());
  return pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  TANDEM_CHECK(t.defined(), "{}: tensor is undefined, expected shape {}", what, shape_str(expected));
  TANDEM_CHECK(t.shape() == expected, "{}: shape {} but expected {}", what, shape_str(t.shape()),
               shape_str(expected));
}

}  // namespace tandem
